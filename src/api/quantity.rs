//! Kubernetes quantity syntax (`100m`, `0.5`, `64Mi`, `1G`, `1e3`). (api helper: stub.)
