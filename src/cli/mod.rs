//! Command-line client: args, kubeconfig, HTTP client, output formatting. (cli helper: stub.)
