//! Where this worker pulls images from: through the master's image cache (the default, so each
//! layer crosses the internet once per fleet) or straight from the registries (`--pull-direct`).
//! One pull per image at a time: containers asking for an image being pulled wait for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::oci::{Credentials, Mirror, Puller, RegistrySettings};
use crate::worker::images::Reference;

#[derive(Debug)]
pub enum Route {
    /// Through the master's `/v2/` (pull-through cache), authenticated as this node.
    Master(Mirror),
    /// Straight to each image's registry.
    Direct,
}

#[derive(Debug)]
pub struct PullSource {
    route: Route,
    /// For direct pulls: plain-HTTP hosts and credentials.
    settings: RegistrySettings,
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl PullSource {
    pub fn new(route: Route, settings: RegistrySettings) -> PullSource {
        PullSource {
            route,
            settings,
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// The master's registry as `creds` reach it: same address and CA as the API, the node's
    /// own name and password.
    pub fn master_route(creds: &crate::worker::join::Credentials) -> Route {
        let url = creds.master.trim_end_matches('/');
        let (plain, host) = match url.split_once("://") {
            Some(("http", rest)) => (true, rest),
            Some((_, rest)) => (false, rest),
            None => (false, url),
        };
        Route::Master(Mirror {
            host: host.split('/').next().unwrap_or(host).to_owned(),
            plain,
            ca_pem: creds.ca_cert.as_ref().map(|c| c.as_bytes().to_vec()),
            credentials: Some(Credentials {
                username: creds.username.clone(),
                password: creds.password.clone(),
            }),
        })
    }

    pub fn puller(&self, image: &Reference) -> Puller {
        match &self.route {
            Route::Master(m) => Puller::via(m, image),
            Route::Direct => Puller::direct(&self.settings, image),
        }
    }

    pub fn describe(&self) -> String {
        match &self.route {
            Route::Master(m) => format!("the master's cache at {}", m.host),
            Route::Direct => "registries directly".into(),
        }
    }

    /// Held while `image` is pulled, so one pull serves every container waiting for it.
    pub async fn lock(&self, image: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            // Forget images nobody holds any more, so the map stays small.
            map.retain(|_, m| Arc::strong_count(m) > 1);
            map.entry(image.to_owned()).or_default().clone()
        };
        m.lock_owned().await
    }
}
