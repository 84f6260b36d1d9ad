//! HTTPS for non-loopback listeners: browsers grant camera and microphone
//! only to secure contexts. Uses the operator's certificate, or generates a
//! self-signed one on first start and keeps it for later starts — until the
//! announced address changes (a new DHCP lease): a certificate that does not
//! name the address browsers open fails with a name error on top of the
//! self-signed warning, so then a new one is made.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use axum_server::tls_rustls::RustlsConfig;

use crate::config::Tls;

pub async fn rustls_config(tls: &Tls, public_ip: IpAddr) -> Result<Option<RustlsConfig>, String> {
    let (cert, key) = match tls {
        Tls::Off => return Ok(None),
        Tls::Files { cert, key } => (cert.clone(), key.clone()),
        Tls::Generated { dir } => ensure_self_signed(dir, public_ip)?,
    };
    RustlsConfig::from_pem_file(&cert, &key)
        .await
        .map(Some)
        .map_err(|e| format!("cannot load {} / {}: {e}", cert.display(), key.display()))
}

/// The names a generated certificate was made for, one per line (rcgen
/// cannot read them back from the certificate).
const NAMES_FILE: &str = "cert-names.txt";

fn ensure_self_signed(dir: &Path, public_ip: IpAddr) -> Result<(PathBuf, PathBuf), String> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let names = vec![public_ip.to_string(), "localhost".to_owned()];
    if cert.exists() && key.exists() {
        match std::fs::read_to_string(dir.join(NAMES_FILE)) {
            Ok(made_for) if !made_for.lines().any(|n| n == names[0]) => {
                tracing::info!(
                    "the kept certificate names {}, not {public_ip}: generating a new one",
                    made_for.lines().next().unwrap_or("another address")
                );
                for old in [&cert, &key] {
                    std::fs::remove_file(old)
                        .map_err(|e| format!("cannot replace {}: {e}", old.display()))?;
                }
            }
            // Made for this address, or by a version that kept no names: keep it.
            _ => return Ok((cert, key)),
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let generated = rcgen::generate_simple_self_signed(names.clone())
        .map_err(|e| format!("cannot generate a certificate: {e}"))?;
    std::fs::write(&cert, generated.cert.pem())
        .map_err(|e| format!("cannot write {}: {e}", cert.display()))?;
    write_private(&key, generated.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(dir.join(NAMES_FILE), names.join("\n") + "\n")
        .map_err(|e| format!("cannot write {}: {e}", dir.join(NAMES_FILE).display()))?;
    tracing::info!("generated a self-signed certificate in {}", dir.display());
    Ok((cert, key))
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(contents)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_generated_certificate_is_created_once_kept_private_and_loads() {
        let dir = std::env::temp_dir().join(format!("conclave-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let tls = Tls::Generated { dir: dir.clone() };
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        assert!(rustls_config(&tls, ip).await.expect("generates").is_some());
        let first = std::fs::read(dir.join("cert.pem")).expect("cert written");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("key.pem"))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o077,
                0,
                "the private key is readable by its owner only"
            );
        }
        assert!(rustls_config(&tls, ip).await.expect("reloads").is_some());
        assert_eq!(
            std::fs::read(dir.join("cert.pem")).expect("cert"),
            first,
            "kept across starts"
        );
        // The address changed: a new certificate, for the new address.
        let moved: IpAddr = "192.0.2.8".parse().expect("ip");
        assert!(rustls_config(&tls, moved)
            .await
            .expect("regenerates")
            .is_some());
        let second = std::fs::read(dir.join("cert.pem")).expect("cert");
        assert_ne!(second, first, "a new certificate for a new address");
        let names = std::fs::read_to_string(dir.join(NAMES_FILE)).expect("names");
        assert!(names.lines().any(|n| n == "192.0.2.8"), "{names}");
        assert!(rustls_config(&tls, moved).await.expect("reloads").is_some());
        assert_eq!(std::fs::read(dir.join("cert.pem")).expect("cert"), second);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_missing_certificate_file_is_a_clear_error() {
        let tls = Tls::Files {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        };
        let err = rustls_config(&tls, "127.0.0.1".parse().expect("ip"))
            .await
            .expect_err("refused");
        assert!(err.contains("/nonexistent/cert.pem"), "{err}");
    }
}
