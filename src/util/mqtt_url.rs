//! `mqtt://HOST:PORT` URLs as given on the command line and returned at join.

#[derive(Debug, thiserror::Error)]
#[error("broker url {url:?}: {problem}")]
pub struct UrlError {
    pub url: String,
    pub problem: &'static str,
}

/// Splits `mqtt://host:port` (port defaults to 1883; `tcp://` accepted as a synonym).
/// Whether the URL asks for MQTT over TLS.
pub fn is_tls(url: &str) -> bool {
    url.starts_with("mqtts://")
}

pub fn parse(url: &str) -> Result<(String, u16), UrlError> {
    let err = |problem| UrlError {
        url: url.to_string(),
        problem,
    };
    let tls = is_tls(url);
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .or_else(|| url.strip_prefix("mqtts://"))
        .ok_or_else(|| err("must start with mqtt:// or mqtts://"))?;
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains('@') {
        return Err(err("expected mqtt://HOST:PORT"));
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| err("port is not a number 1-65535"))?,
        None if tls => 8883,
        None => 1883,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(err("expected mqtt://HOST:PORT"));
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_urls_split_into_host_and_port() {
        assert_eq!(
            parse("mqtt://10.0.0.1:1884").unwrap(),
            ("10.0.0.1".into(), 1884)
        );
        assert_eq!(parse("mqtt://broker").unwrap(), ("broker".into(), 1883));
        assert_eq!(parse("tcp://h:1/").unwrap(), ("h".into(), 1));
        assert_eq!(parse("mqtt://[::1]:1883").unwrap(), ("::1".into(), 1883));
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for u in [
            "http://x:1",
            "mqtt://",
            "mqtt://h:0",
            "mqtt://h:x",
            "mqtt://u@h:1",
            "mqtt://h:1/p",
        ] {
            assert!(parse(u).is_err(), "{u}");
        }
    }
}
