//! Certificate and key pairs: read from PEM files and checked against each other, then
//! indexed by the DNS names of each certificate for the SNI pick.

use std::path::Path;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Which file of a pair is at fault, and why.
#[derive(Debug)]
pub(crate) enum PairError {
    Cert(String),
    Key(String),
}

/// One loaded pair and the DNS names its certificate is valid for.
#[derive(Debug)]
pub(crate) struct Pair {
    key: Arc<CertifiedKey>,
    names: Vec<String>,
}

/// Reads and checks the pair at `cert` (a PEM chain, leaf first) and `key` (a PEM
/// PKCS#8, PKCS#1 or SEC1 private key): both parse, and the key is the certificate's.
/// The bytes read go into `digest`, so that a later change of either file is seen.
pub(crate) fn load_pair(
    cert: &Path,
    key: &Path,
    digest: &mut super::FilesDigest,
) -> Result<Pair, PairError> {
    let provider = super::provider();
    let cert_bytes = std::fs::read(cert).map_err(|e| {
        PairError::Cert(format!(
            "cannot read certificate file {}: {e}",
            cert.display()
        ))
    })?;
    let key_bytes = std::fs::read(key)
        .map_err(|e| PairError::Key(format!("cannot read key file {}: {e}", key.display())))?;
    digest.add(cert, &cert_bytes);
    digest.add(key, &key_bytes);
    let chain = read_chain(cert, &cert_bytes).map_err(PairError::Cert)?;
    let private = read_key(key, &key_bytes).map_err(PairError::Key)?;
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| PairError::Key(format!("cannot use the key in {}: {e}", key.display())))?;
    let certified = CertifiedKey::new(chain, signing);
    certified_matches(&certified).map_err(|e| {
        PairError::Key(format!(
            "the key in {} does not belong to the certificate in {}: {e}",
            key.display(),
            cert.display()
        ))
    })?;
    let names = dns_names(&certified.cert[0]);
    Ok(Pair {
        key: Arc::new(certified),
        names,
    })
}

fn certified_matches(key: &CertifiedKey) -> Result<(), rustls::Error> {
    match key.keys_match() {
        // A key type whose public half rustls cannot derive: the handshake tells.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        other => other,
    }
}

fn read_chain(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate file {} is not valid PEM: {e}", path.display()))?;
    let Some(leaf) = chain.first() else {
        return Err(format!(
            "certificate file {} holds no certificate (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    };
    if let Err(e) = webpki::EndEntityCert::try_from(leaf) {
        return Err(format!(
            "certificate file {}: the first certificate does not parse: {e}",
            path.display()
        ));
    }
    Ok(chain)
}

fn read_key(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => format!(
            "key file {} holds no private key (expected -----BEGIN PRIVATE KEY-----)",
            path.display()
        ),
        e => format!("key file {} is not valid PEM: {e}", path.display()),
    })
}

/// The DNS names in the leaf's subject alternative names, lower-cased.
fn dns_names(leaf: &CertificateDer<'_>) -> Vec<String> {
    match webpki::EndEntityCert::try_from(leaf) {
        Ok(parsed) => parsed
            .valid_dns_names()
            .map(|n| n.to_ascii_lowercase())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Every pair of a config, indexed for the SNI pick: an exact name first, then a
/// wildcard (`*.example.com` covers one label), then the first pair listed.
#[derive(Debug)]
pub(crate) struct Certs {
    exact: FxHashMap<String, Arc<CertifiedKey>>,
    /// By the part after `*.`.
    wildcard: FxHashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl Certs {
    /// The index of `pairs`, in file order (an earlier pair wins a name both carry);
    /// None when there are none.
    pub(crate) fn new(pairs: Vec<Pair>) -> Option<Certs> {
        let default = pairs.first()?.key.clone();
        let mut exact = FxHashMap::default();
        let mut wildcard = FxHashMap::default();
        for pair in pairs {
            for name in pair.names {
                let (map, name) = match name.strip_prefix("*.") {
                    Some(parent) => (&mut wildcard, parent.to_owned()),
                    None => (&mut exact, name),
                };
                map.entry(name).or_insert_with(|| pair.key.clone());
            }
        }
        Some(Certs {
            exact,
            wildcard,
            default,
        })
    }

    fn pick(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name else {
            return self.default.clone();
        };
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if let Some(key) = self.exact.get(name) {
            return key.clone();
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(key) = self.wildcard.get(parent) {
                return key.clone();
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(names: &[&str]) -> Pair {
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        let cert = params.self_signed(&key).expect("cert");
        let der = PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
        let signing = super::super::provider()
            .key_provider
            .load_private_key(der)
            .expect("signing key");
        let certified = CertifiedKey::new(vec![cert.der().clone()], signing);
        Pair {
            names: dns_names(&certified.cert[0]),
            key: Arc::new(certified),
        }
    }

    #[test]
    fn exact_names_beat_wildcards_and_the_first_pair_is_the_default() {
        let a = pair(&["a.test"]);
        let wild = pair(&["*.b.test", "b.test"]);
        let exact = pair(&["x.b.test"]);
        let (ka, kw, kx) = (a.key.clone(), wild.key.clone(), exact.key.clone());
        let certs = Certs::new(vec![a, wild, exact]).expect("certs");
        let is = |name: Option<&str>, key: &Arc<CertifiedKey>| {
            assert!(Arc::ptr_eq(&certs.pick(name), key), "{name:?}");
        };
        is(Some("a.test"), &ka);
        is(Some("A.Test."), &ka);
        is(Some("y.b.test"), &kw);
        is(Some("b.test"), &kw);
        is(Some("x.b.test"), &kx);
        // A wildcard covers one label only.
        is(Some("z.y.b.test"), &ka);
        is(Some("unknown.test"), &ka);
        is(None, &ka);
    }
}
