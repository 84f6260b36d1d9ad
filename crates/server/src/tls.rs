//! HTTPS for non-loopback listeners: browsers grant camera and microphone
//! only to secure contexts. Uses the operator's certificate, or generates a
//! self-signed one on first start and keeps it for later starts.

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

fn ensure_self_signed(dir: &Path, public_ip: IpAddr) -> Result<(PathBuf, PathBuf), String> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let names = vec![public_ip.to_string(), "localhost".to_owned()];
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot generate a certificate: {e}"))?;
    std::fs::write(&cert, generated.cert.pem())
        .map_err(|e| format!("cannot write {}: {e}", cert.display()))?;
    write_private(&key, generated.signing_key.serialize_pem().as_bytes())?;
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
