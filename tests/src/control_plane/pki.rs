//! The control plane's own PKI, made with `openssl` as a cluster installer
//! does: a CA; the API server's serving certificate with a SAN for every
//! address its clients use; client certificates (an admin in
//! `system:masters`, the controller-manager as `system:kube-controller-manager`);
//! and the RSA key pair that signs service-account tokens.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::cmd;
use crate::error::{Error, Result};

/// Where each file of the PKI is.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    pub controller_manager_cert: PathBuf,
    pub controller_manager_key: PathBuf,
    /// Signs service-account tokens (private) and verifies them (public).
    pub service_account_key: PathBuf,
    pub service_account_pub: PathBuf,
}

/// Days every certificate is valid (a test run is far shorter).
const DAYS: &str = "2";

impl Pki {
    /// Makes the PKI in `dir`: the serving certificate covers `addresses`
    /// (plus `localhost`, the service IP and the in-cluster DNS names).
    pub fn create(dir: &Path, addresses: &[IpAddr], service_ip: IpAddr) -> Result<Pki> {
        let f = |name: &str| dir.join(name);
        let pki = Pki {
            ca_cert: f("ca.crt"),
            ca_key: f("ca.key"),
            serving_cert: f("apiserver.crt"),
            serving_key: f("apiserver.key"),
            admin_cert: f("admin.crt"),
            admin_key: f("admin.key"),
            controller_manager_cert: f("controller-manager.crt"),
            controller_manager_key: f("controller-manager.key"),
            service_account_key: f("sa.key"),
            service_account_pub: f("sa.pub"),
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            s(&pki.ca_key)?,
            "-out",
            s(&pki.ca_cert)?,
            "-subj",
            "/CN=starling-test-ca",
            "-days",
            DAYS,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        ])?;
        let mut sans: Vec<String> = [
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        sans.push(format!("IP:{service_ip}"));
        for a in addresses {
            sans.push(format!("IP:{a}"));
        }
        pki.sign(
            dir,
            "apiserver",
            "/CN=kube-apiserver",
            &format!(
                "subjectAltName={}\nextendedKeyUsage=serverAuth\n",
                sans.join(",")
            ),
            &pki.serving_key,
            &pki.serving_cert,
        )?;
        pki.sign(
            dir,
            "admin",
            "/O=system:masters/CN=starling-test-admin",
            "extendedKeyUsage=clientAuth\n",
            &pki.admin_key,
            &pki.admin_cert,
        )?;
        pki.sign(
            dir,
            "controller-manager",
            "/CN=system:kube-controller-manager",
            "extendedKeyUsage=clientAuth\n",
            &pki.controller_manager_key,
            &pki.controller_manager_cert,
        )?;
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            s(&pki.service_account_key)?,
        ])?;
        openssl(&[
            "pkey",
            "-in",
            s(&pki.service_account_key)?,
            "-pubout",
            "-out",
            s(&pki.service_account_pub)?,
        ])?;
        Ok(pki)
    }

    /// A key and a certificate for `subject`, signed by the CA, with the
    /// extensions in `ext` (an openssl extension file's text).
    fn sign(
        &self,
        dir: &Path,
        name: &str,
        subject: &str,
        ext: &str,
        key: &Path,
        cert: &Path,
    ) -> Result<()> {
        let csr = dir.join(format!("{name}.csr"));
        let ext_file = dir.join(format!("{name}.ext"));
        std::fs::write(&ext_file, ext)
            .map_err(|e| Error::io(format!("writing {}", ext_file.display()), e))?;
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            s(key)?,
            "-out",
            s(&csr)?,
            "-subj",
            subject,
        ])?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            s(&csr)?,
            "-CA",
            s(&self.ca_cert)?,
            "-CAkey",
            s(&self.ca_key)?,
            "-CAcreateserial",
            "-days",
            DAYS,
            "-extfile",
            s(&ext_file)?,
            "-out",
            s(cert)?,
        ])?;
        Ok(())
    }
}

fn openssl(args: &[&str]) -> Result<()> {
    cmd::run("openssl", args).map(|_| ())
}

pub(crate) fn s(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| Error::Setup(format!("path {} is not UTF-8", p.display())))
}
