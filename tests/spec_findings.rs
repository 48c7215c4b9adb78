//! One regression test per finding of the spec fuzzer (`.ci/schemathesis.sh`), each against a
//! running server: what schemathesis sent, and the answer the spec now promises.

mod common;

use common::Server;

/// schemathesis (ST202, positive data acceptance): `POST /v1/datasets?target=X` with a CSV
/// body that has no column X answered 400 without a pointer, as if the file were unreadable.
/// The file is fine; the query parameter is wrong: 422 at `/target`, as for JSON uploads.
#[tokio::test]
async fn a_csv_target_that_names_no_column_is_422_at_the_parameter() {
    let srv = Server::start(&[]).await;
    for (query, csv) in [
        ("?name=0&target=%E4%85%AFq", "}\u{dd}g\n1\n"),
        ("?target=label", "a,b,c\n1,2,3\n"),
    ] {
        let r = srv
            .post_raw(&format!("/v1/datasets{query}"), "text/csv", csv)
            .await;
        assert_eq!(r.status(), 422, "{query}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["pointer"], "/target", "{body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("there is no column named"),
            "{body}"
        );
    }
    // A target in the file still works, and nothing was stored by the refusals.
    let r = srv
        .post_raw("/v1/datasets?target=c", "text/csv", "a,b,c\n1,2,3\n")
        .await;
    assert_eq!(r.status(), 201);
    let (_, list) = srv.get("/v1/datasets").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

/// schemathesis (ST108, response schema conformance): `GET /openapi.yaml` is a YAML mapping,
/// which the spec described as `type: string`, so every parsed answer violated it. The spec
/// now says `object` with the document's required keys, and the server serves exactly it.
#[tokio::test]
async fn the_served_openapi_document_is_the_mapping_the_spec_describes() {
    let srv = Server::start(&[]).await;
    let r = srv.client.get(srv.url("/openapi.yaml")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/yaml");
    let text = r.text().await.unwrap();
    assert_eq!(text, include_str!("../openapi.yaml"));
    // A mapping with the keys the response schema requires, at the top level.
    for key in ["openapi:", "info:", "paths:"] {
        assert!(text.lines().any(|l| l.starts_with(key)), "no top-level {key}");
    }
    let op = &text[text.find("operationId: getOpenApi").unwrap()..];
    let op = &op[..op.find("\n  /").unwrap()];
    assert!(op.contains("type: object"), "{op}");
    assert!(op.contains("required: [openapi, info, paths]"), "{op}");
    assert!(!op.contains("type: string"), "{op}");
}
