//! Validation of typed objects, each error naming its field path. (api helper: stub.)
