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
        .post_raw("/v1/datasets?target=c", "text/csv", "a,b,c\n1,2,3\n4,5,6\n")
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
    let r = srv
        .client
        .get(srv.url("/openapi.yaml"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/yaml");
    let text = r.text().await.unwrap();
    assert_eq!(text, include_str!("../openapi.yaml"));
    // A mapping with the keys the response schema requires, at the top level.
    for key in ["openapi:", "info:", "paths:"] {
        assert!(
            text.lines().any(|l| l.starts_with(key)),
            "no top-level {key}"
        );
    }
    let op = &text[text.find("operationId: getOpenApi").unwrap()..];
    let op = &op[..op.find("\n  /").unwrap()];
    assert!(op.contains("type: object"), "{op}");
    assert!(op.contains("required: [openapi, info, paths]"), "{op}");
    assert!(!op.contains("type: string"), "{op}");
}

/// The text of one operation in openapi.yaml, from its operationId (at the operation's
/// indentation, not a link's) to the next path.
fn operation(id: &str) -> &'static str {
    let text = include_str!("../openapi.yaml");
    let op = &text[text
        .find(&format!("\n      operationId: {id}\n"))
        .unwrap_or_else(|| panic!("no operation {id}"))..];
    &op[..op.find("\n  /").unwrap_or(op.len())]
}

/// schemathesis (ST108, SSE event schema): the stateful phase reached a job's event stream
/// and checked each event against the `text/event-stream` schema, which was `type: string`.
/// An event is an object of `event`, `id` and `data`: the spec now says so, and the stream
/// sends exactly those shapes.
#[tokio::test]
async fn event_stream_events_have_the_shape_the_spec_describes() {
    let srv = Server::start(&[]).await;
    let (st, job) = srv
        .post(
            "/v1/jobs",
            &serde_json::json!({"dataset": {"features": [[0], [1], [2], [3]], "targets": [0, 1, 1, 0]},
                "layers": [{"units": 2, "activation": "tanh"}, {"units": 1}], "loss": "mse",
                "epochs": 3, "seed": 1}),
        )
        .await;
    assert_eq!(st, 202, "{job}");
    let id = job["id"].as_str().unwrap();
    srv.wait_job(id, std::time::Duration::from_secs(30)).await;
    let r = srv
        .client
        .get(srv.url(&format!("/v1/jobs/{id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = r.text().await.unwrap();
    let events: Vec<std::collections::BTreeMap<&str, &str>> = text
        .split("\n\n")
        .filter(|b| b.lines().any(|l| !l.starts_with(':') && !l.is_empty()))
        .map(|b| {
            b.lines()
                .filter_map(|l| l.split_once(':'))
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k, v.trim_start()))
                .collect()
        })
        .collect();
    assert_eq!(events.len(), 4, "{text}");
    for (i, e) in events[..3].iter().enumerate() {
        assert_eq!(e["event"], "epoch");
        assert_eq!(e["id"], (i + 1).to_string());
        let rec: serde_json::Value = serde_json::from_str(e["data"]).unwrap();
        assert_eq!(rec["epoch"], i + 1);
    }
    let last = &events[3];
    assert_eq!(last["event"], "status");
    assert!(!last.contains_key("id"));
    let job: serde_json::Value = serde_json::from_str(last["data"]).unwrap();
    assert_eq!(job["status"], "succeeded");

    let op = operation("streamJobEvents");
    for shape in [
        "const: epoch",
        "const: status",
        "required: [event, id, data]",
    ] {
        assert!(op.contains(shape), "the events schema lacks {shape}");
    }
}

/// schemathesis (ST202): `GET /v1/jobs/{id}/history?since=43084604044305732993024` is an
/// integer ≥ 0 as the spec had it, but no server integer holds it (400 naming `since`). The
/// spec now bounds `since` (history and events) to int64, so such a request is invalid data.
#[tokio::test]
async fn since_beyond_int64_is_outside_the_spec_and_named_in_the_answer() {
    let srv = Server::start(&[]).await;
    let (_, job) = srv
        .post(
            "/v1/jobs",
            &serde_json::json!({"dataset": {"features": [[0], [1]], "targets": [0, 1]},
                "layers": [{"units": 1}], "loss": "mse", "epochs": 1}),
        )
        .await;
    let id = job["id"].as_str().unwrap();
    for path in ["history", "events"] {
        let r = srv
            .client
            .get(srv.url(&format!(
                "/v1/jobs/{id}/{path}?since=43084604044305732993024"
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["detail"].as_str().unwrap().contains("since"), "{body}");
    }
    let (st, h) = srv
        .get(&format!("/v1/jobs/{id}/history?since=9223372036854775807"))
        .await;
    assert_eq!(st, 200, "{h}");
    assert_eq!(h["epochs"], serde_json::json!([]));
    for op in ["getJobHistory", "streamJobEvents"] {
        assert!(
            operation(op).contains("maximum: 9223372036854775807"),
            "{op}: since is unbounded"
        );
    }
}

/// schemathesis (ST108, response schema conformance): `GET /v1/datasets/{id}/rows` of a
/// dataset with numeric targets answered `"target": 0.0`, which matched both a `ClassLabel`
/// (a whole number) and a number under the spec's `oneOf`, so it matched none. A target is
/// any one of those shapes: the spec now says `anyOf`.
#[tokio::test]
async fn a_whole_numbered_target_matches_the_rows_schema() {
    let srv = Server::start(&[]).await;
    let (st, ds) = srv
        .post(
            "/v1/datasets",
            &serde_json::json!({"features": [[0, 0], [0, 1], [1, 0], [1, 1]], "targets": [0, 1, 1, 0]}),
        )
        .await;
    assert_eq!(st, 201, "{ds}");
    let id = ds["id"].as_str().unwrap();
    let (st, rows) = srv.get(&format!("/v1/datasets/{id}/rows?limit=2")).await;
    assert_eq!(st, 200, "{rows}");
    assert!(rows["rows"][0]["target"].is_number(), "{rows}");
    let text = include_str!("../openapi.yaml");
    let schema = &text[text.find("\n    DatasetRows:").expect("DatasetRows schema")..];
    let target = &schema[schema.find("              target:").unwrap()..];
    let target = &target[..target.find("\n    JobPredictResponse:").unwrap()];
    assert!(
        target.contains("anyOf:") && !target.contains("oneOf:"),
        "{target}"
    );
}
