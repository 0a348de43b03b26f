//! A test PKI: root CA → intermediate CA → server certificate (localhost, 127.0.0.1, ::1) and
//! device certificates whose CN is the registration id.
//!
//! All keys are ECDSA P-256. Device and server chains are written leaf first, then the
//! intermediate, as TLS peers send them.

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use time::{Duration, OffsetDateTime};

/// A device's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCert {
    /// Leaf certificate (CN = registration id), then the intermediate CA, in PEM.
    pub cert_chain_pem: String,
    /// The leaf's private key, PKCS#8 PEM.
    pub key_pem: String,
}

/// The emulator's certificates and keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pki {
    /// The root CA certificate: what devices trust to verify the server, and what the emulator
    /// trusts to verify devices.
    pub root_ca_pem: String,
    /// The intermediate CA certificate (issues the server and device certificates).
    pub intermediate_ca_pem: String,
    /// The intermediate CA's private key, PKCS#8 PEM: what signs the certificates the emulator
    /// issues for a register request with a CSR. `None` when a certificate directory written by
    /// an older emulator has no `intermediate-ca-key.pem` (CSRs then get a 500 reply).
    pub intermediate_key_pem: Option<String>,
    /// Server certificate then intermediate, PEM.
    pub server_chain_pem: String,
    /// The server's private key, PKCS#8 PEM.
    pub server_key_pem: String,
    /// Device credentials by registration id.
    pub devices: BTreeMap<String, DeviceCert>,
}

const ROOT_CA: &str = "root-ca.pem";
const INTERMEDIATE_CA: &str = "intermediate-ca.pem";
const INTERMEDIATE_KEY: &str = "intermediate-ca-key.pem";
const SERVER_CHAIN: &str = "server-chain.pem";
const SERVER_KEY: &str = "server-key.pem";

fn validity(p: &mut CertificateParams) {
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::days(1);
    p.not_after = now + Duration::days(3650);
}

fn ca_params(cn: &str, path_len: Option<u8>) -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name
        .push(DnType::OrganizationName, "dps-emulator test PKI");
    p.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut p);
    Ok(p)
}

fn leaf(
    cn: &str,
    sans: Vec<SanType>,
    eku: ExtendedKeyUsagePurpose,
    issuer: &Certificate,
    issuer_key: &KeyPair,
) -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::CommonName, cn);
    p.subject_alt_names = sans;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![eku];
    p.use_authority_key_identifier_extension = true;
    validity(&mut p);
    let cert = p.signed_by(&key, issuer, issuer_key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

impl Pki {
    /// Generates a fresh PKI with a device certificate for each registration id.
    ///
    /// # Panics
    /// Only if the crypto library cannot generate a key, which does not happen on a working
    /// system; use [`Pki::try_generate`] to get the error instead.
    pub fn generate(devices: &[&str]) -> Pki {
        Self::try_generate(devices).expect("generating the test PKI")
    }

    /// Like [`Pki::generate`], returning the error.
    pub fn try_generate(devices: &[&str]) -> io::Result<Pki> {
        Self::build(devices).map_err(|e| io::Error::other(format!("generating the PKI: {e}")))
    }

    fn build(devices: &[&str]) -> Result<Pki, rcgen::Error> {
        let root_key = KeyPair::generate()?;
        let root = ca_params("dps-emulator Root CA", None)?.self_signed(&root_key)?;
        let int_key = KeyPair::generate()?;
        let mut int_params = ca_params("dps-emulator Intermediate CA", Some(0))?;
        int_params.use_authority_key_identifier_extension = true;
        let int = int_params.signed_by(&int_key, &root, &root_key)?;
        let int_pem = int.pem();

        let (server_pem, server_key_pem) = leaf(
            "localhost",
            vec![
                SanType::DnsName("localhost".try_into()?),
                SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ],
            ExtendedKeyUsagePurpose::ServerAuth,
            &int,
            &int_key,
        )?;
        let mut map = BTreeMap::new();
        for id in devices {
            let (pem, key_pem) = leaf(
                id,
                Vec::new(),
                ExtendedKeyUsagePurpose::ClientAuth,
                &int,
                &int_key,
            )?;
            map.insert(
                id.to_string(),
                DeviceCert {
                    cert_chain_pem: format!("{pem}{int_pem}"),
                    key_pem,
                },
            );
        }
        Ok(Pki {
            root_ca_pem: root.pem(),
            server_chain_pem: format!("{server_pem}{int_pem}"),
            intermediate_ca_pem: int_pem,
            intermediate_key_pem: Some(int_key.serialize_pem()),
            server_key_pem,
            devices: map,
        })
    }

    /// A device's certificate chain and key.
    pub fn device(&self, id: &str) -> Option<&DeviceCert> {
        self.devices.get(id)
    }

    /// Writes `root-ca.pem`, `intermediate-ca.pem`, `intermediate-ca-key.pem`,
    /// `server-chain.pem`, `server-key.pem`, `device-<id>.pem` (leaf + intermediate) and
    /// `device-<id>-key.pem` into `dir` (created if missing). The private keys are readable by
    /// their owner only (0600).
    pub fn write_to(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(ROOT_CA), &self.root_ca_pem)?;
        std::fs::write(dir.join(INTERMEDIATE_CA), &self.intermediate_ca_pem)?;
        if let Some(k) = &self.intermediate_key_pem {
            write_private(&dir.join(INTERMEDIATE_KEY), k)?;
        }
        std::fs::write(dir.join(SERVER_CHAIN), &self.server_chain_pem)?;
        write_private(&dir.join(SERVER_KEY), &self.server_key_pem)?;
        for (id, d) in &self.devices {
            std::fs::write(dir.join(format!("device-{id}.pem")), &d.cert_chain_pem)?;
            write_private(&dir.join(format!("device-{id}-key.pem")), &d.key_pem)?;
        }
        Ok(())
    }

    /// Reads what [`Pki::write_to`] wrote. Device files and the intermediate key are optional.
    pub fn load_from(dir: &Path) -> io::Result<Pki> {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.join(name).display())))
        };
        let mut devices = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            let Some(id) = name
                .strip_prefix("device-")
                .and_then(|r| r.strip_suffix(".pem"))
            else {
                continue;
            };
            if id.ends_with("-key") {
                continue;
            }
            let key_name = format!("device-{id}-key.pem");
            if !dir.join(&key_name).exists() {
                continue;
            }
            devices.insert(
                id.to_string(),
                DeviceCert {
                    cert_chain_pem: read(&name)?,
                    key_pem: read(&key_name)?,
                },
            );
        }
        Ok(Pki {
            root_ca_pem: read(ROOT_CA)?,
            intermediate_ca_pem: read(INTERMEDIATE_CA)?,
            intermediate_key_pem: match dir.join(INTERMEDIATE_KEY).exists() {
                true => Some(read(INTERMEDIATE_KEY)?),
                false => None,
            },
            server_chain_pem: read(SERVER_CHAIN)?,
            server_key_pem: read(SERVER_KEY)?,
            devices,
        })
    }
}

/// Writes a private key with mode 0600, also over an existing file that had wider permissions.
fn write_private(path: &Path, text: &str) -> io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut f = options.open(path)?;
        // `mode` applies only when the file is created
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(text.as_bytes())
    }
    #[cfg(not(unix))]
    {
        options.open(path)?.write_all(text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_write_load_round_trip() {
        let pki = Pki::generate(&["dev1", "dev-2"]);
        assert_eq!(
            pki.device("dev1")
                .unwrap()
                .cert_chain_pem
                .matches("BEGIN CERTIFICATE")
                .count(),
            2
        );
        assert!(pki.device("nope").is_none());
        let dir = tempfile::tempdir().unwrap();
        pki.write_to(dir.path()).unwrap();
        assert!(dir.path().join("device-dev-2-key.pem").exists());
        let loaded = Pki::load_from(dir.path()).unwrap();
        assert_eq!(loaded, pki);
    }

    #[test]
    fn device_cn_is_the_registration_id() {
        let pki = Pki::generate(&["my-device.01"]);
        let chain = &pki.device("my-device.01").unwrap().cert_chain_pem;
        let first = rustls::pki_types::pem::PemObject::pem_slice_iter(chain.as_bytes())
            .next()
            .unwrap();
        let der: rustls::pki_types::CertificateDer = first.unwrap();
        assert_eq!(
            crate::tls::common_name(&der).as_deref(),
            Some("my-device.01")
        );
    }
}
