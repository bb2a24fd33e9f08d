//! Where the fleet's etcd is: the `--store` argument, read and checked.

/// `etcd://HOST:PORT[,HOST:PORT...]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreUrl {
    pub endpoints: Vec<String>,
}

impl std::str::FromStr for StoreUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<StoreUrl, String> {
        let rest = s.strip_prefix("etcd://").ok_or_else(|| format!("`{s}`: a store is etcd://HOST:PORT[,HOST:PORT...]"))?;
        let mut endpoints = Vec::new();
        for hp in rest.split(',') {
            let (host, port) = hp.rsplit_once(':').ok_or_else(|| format!("`{hp}`: HOST:PORT expected"))?;
            if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(format!("`{hp}`: HOST:PORT expected (a port from 1 to 65535)"));
            }
            endpoints.push(format!("http://{hp}"));
        }
        Ok(StoreUrl { endpoints })
    }
}
