//! Issue 23, item 16: managed PostgreSQL needs TLS. sqlx is built with rustls (webpki roots
//! bundled, so a container needs no system certificates) and honours `sslmode` and
//! `sslrootcert` in the URL. The local PostgreSQL serves TLS with its own self-signed
//! certificate (Debian's `ssl = on` and snakeoil pair): a node reaches it with
//! `sslmode=require` and `verify-ca` against that certificate, over TLS (as
//! `pg_stat_ssl` shows), and refuses it against a certificate authority the test makes.

mod common;

use common::{Schema, Server};
use sqlx::{Connection, Executor, Row};

const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

/// Whether the local PostgreSQL serves TLS.
async fn server_has_tls(url: &str) -> bool {
    let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
    let on: String = c.fetch_one("SHOW ssl").await.unwrap().get(0);
    on == "on"
}

#[tokio::test]
async fn a_node_reaches_postgres_over_tls_and_checks_its_certificate() {
    let Some(db) = Schema::create().await else {
        return;
    };
    if !server_has_tls(&db.url).await || !std::path::Path::new(SNAKEOIL).exists() {
        println!("skipped: the local PostgreSQL does not serve TLS");
        return;
    }
    let app = format!("bp-tls-{}", std::process::id());
    for mode in [
        "sslmode=require".to_string(),
        format!("sslmode=verify-ca&sslrootcert={SNAKEOIL}"),
    ] {
        let url = format!("{}&{mode}&application_name={app}", db.url);
        let srv = Server::start(&["--database-url", &url]).await;
        let (st, _) = srv.post("/v1/datasets", &common::circle(20)).await;
        assert_eq!(st, 201, "{mode}");
        let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let r = sqlx::query(
            "SELECT count(*) AS n, coalesce(bool_and(s.ssl), false) AS tls
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
             WHERE a.application_name = $1",
        )
        .bind(&app)
        .fetch_one(&mut c)
        .await
        .unwrap();
        let (n, tls): (i64, bool) = (r.get("n"), r.get("tls"));
        assert!(n > 0 && tls, "{mode}: {n} connections, all over TLS: {tls}");
        drop(srv);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }

    // A certificate authority the test makes did not sign the server's certificate: the
    // node refuses to start rather than talk to an unverified database.
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = (dir.path().join("ca.key"), dir.path().join("ca.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=not-this-server",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{made:?}");
    let url = format!(
        "{}&sslmode=verify-ca&sslrootcert={}",
        db.url,
        cert.display()
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_backprop"))
        .args(["migrate", "--database-url", &url])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a database signed by another authority was trusted"
    );
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("certificate") || err.contains("tls"), "{err}");
}
