//! Values as exports write them: currency with thousands separators, accounting negatives,
//! percentages, dates and timestamps in several formats, identifiers, free text, an empty
//! column. Each column's type comes with its format and a reason; the dataset carries
//! warnings; a model trained on the file reads raw cells at predict as the upload read them;
//! a column typed by the user that does not read names its first bad cell.

mod common;

use common::{Server, split};
use serde_json::{Value, json};
use std::time::Duration;

async fn upload(srv: &Server, query: &str, body: String) -> (u16, Value) {
    split(
        srv.post_raw(
            &format!("/v1/datasets?{query}"),
            "text/csv",
            body.into_bytes(),
        )
        .await,
    )
    .await
}

/// A customer export as a US spreadsheet writes it: 300 rows.
fn customers() -> String {
    let mut s = String::from(
        "customer_id,signup_date,last_seen,revenue,discount,balance,plan,active,notes,churn\n",
    );
    let mut seed = 11u64;
    let mut next = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for i in 0..300u64 {
        let revenue = 100 + next(4000) * 3;
        let cents = next(100);
        let discount = next(40);
        let balance = next(3000) as i64 - 1500;
        let plan = ["Basic", "Pro", "Enterprise"][next(3) as usize];
        let (m, d, y) = (1 + next(12), 1 + next(28), 2019 + next(5));
        let churn = u64::from(revenue < 2000 && discount < 20 || plan == "Basic" && m > 9);
        let balance = if balance < 0 {
            format!("\"({},{:03}.00)\"", -balance / 1000, -balance % 1000)
        } else {
            format!("\"{},{:03}.00\"", balance / 1000, balance % 1000)
        };
        s.push_str(&format!(
            "C{i:05},{m:02}/{d:02}/{y},2024-{:02}-{:02}T{:02}:{:02}:00Z,\"${},{:03}.{cents:02}\",{discount}%,{balance},{plan},{},,{churn}\n",
            1 + next(12),
            1 + next(28),
            next(24),
            next(60),
            revenue / 1000,
            revenue % 1000,
            if next(2) == 0 { "Yes" } else { "No" },
        ));
    }
    s
}

fn column<'a>(ds: &'a Value, name: &str) -> &'a Value {
    ds["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no column {name} in {ds}"))
}

#[tokio::test]
async fn an_export_reads_with_kinds_reasons_and_warnings_and_predicts_raw_cells() {
    let srv = Server::start(&[]).await;
    let (st, ds) = upload(&srv, "target=churn&name=customers", customers()).await;
    assert_eq!(st, 201, "{ds}");
    let kind = |n: &str| column(&ds, n)["type"].as_str().unwrap().to_owned();
    let reason = |n: &str| column(&ds, n)["reason"].as_str().unwrap().to_owned();
    assert_eq!(kind("customer_id"), "ignore");
    assert!(reason("customer_id").contains("identifier"), "{ds}");
    assert_eq!(kind("revenue"), "numeric");
    assert!(
        reason("revenue").contains("currency, `$` and `,` removed"),
        "{}",
        reason("revenue")
    );
    assert_eq!(column(&ds, "revenue")["format"]["number"]["thousands"], ",");
    assert_eq!(kind("discount"), "numeric");
    assert_eq!(column(&ds, "discount")["format"]["number"]["percent"], true);
    assert_eq!(kind("balance"), "numeric");
    assert!(reason("balance").contains("accounting negatives"), "{ds}");
    assert_eq!(kind("signup_date"), "date");
    assert!(reason("signup_date").contains("month/day/year"), "{ds}");
    assert_eq!(column(&ds, "signup_date")["format"]["date"]["order"], "mdy");
    assert_eq!(kind("last_seen"), "date");
    assert_eq!(column(&ds, "last_seen")["format"]["date"]["time"], true);
    assert_eq!(kind("plan"), "categorical");
    assert_eq!(kind("active"), "boolean");
    // An empty column is ignored with a warning, not refused.
    assert_eq!(kind("notes"), "ignore");
    assert!(reason("notes").contains("empty"), "{ds}");
    let warnings = ds["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w["code"] == "empty_column" && w["column"] == "notes"),
        "{ds}"
    );
    // The profile says the same, with the dates' range.
    let id = ds["id"].as_str().unwrap();
    let (_, full) = srv.get(&format!("/v1/datasets/{id}")).await;
    let p = full["profile"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "signup_date")
        .unwrap()
        .clone();
    assert_eq!(p["reason"], column(&ds, "signup_date")["reason"]);
    assert!(p["dates"][0].as_str().unwrap().starts_with("2019-"), "{p}");
    // Rows show the numbers read, and dates as ISO 8601.
    let (_, rows) = srv.get(&format!("/v1/datasets/{id}/rows?limit=1")).await;
    let first = &rows["rows"][0]["features"];
    assert!(first[1].as_str().unwrap().len() == 10, "{rows}");
    assert!(
        first[3].is_number() && first[4].as_f64().unwrap() < 1.0,
        "{rows}"
    );

    // Train, then predict by record with the cells as the file writes them.
    let (st, job) = srv
        .post(
            "/v1/jobs",
            &json!({
                "dataset_id": id,
                "layers": [{"units": 16, "activation": "relu"}, {}],
                "loss": "binary_crossentropy",
                "optimizer": {"type": "adam", "learning_rate": 0.01},
                "epochs": 40, "batch_size": 32, "seed": 1, "validation_split": 0.2
            }),
        )
        .await;
    assert_eq!(st, 202, "{job}");
    let done = srv
        .wait_job(job["id"].as_str().unwrap(), Duration::from_secs(120))
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let model_id = done["model_id"].as_str().unwrap();
    let (_, m) = srv.get(&format!("/v1/models/{model_id}")).await;
    let names: Vec<&str> = m["feature_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    for n in [
        "revenue",
        "discount",
        "signup_date (days)",
        "signup_date (month sin)",
        "last_seen (hour cos)",
        "last_seen (weekday sin)",
    ] {
        assert!(names.contains(&n), "{n} not in {names:?}");
    }
    // A plain date's day of the week is no input unless the user asks for it.
    assert!(!names.contains(&"signup_date (weekday sin)"), "{names:?}");
    let record = json!({"customer_id": "C99999", "signup_date": "03/05/2024",
        "last_seen": "2024-06-01T10:00:00Z", "revenue": "$1,250.00", "discount": "15%",
        "balance": "(1,200.00)", "plan": "Pro", "active": "Yes", "notes": null});
    let (st, a) = srv
        .post(
            &format!("/v1/models/{model_id}/predict"),
            &json!({"inputs": [record]}),
        )
        .await;
    assert_eq!(st, 200, "{a}");
    // The same row as numbers (days since 1970 for dates) answers the same.
    let numbers = json!({"customer_id": "C99999", "signup_date": 19787.0,
        "last_seen": 19875.0 + 10.0 / 24.0, "revenue": 1250.0, "discount": 0.15,
        "balance": -1200.0, "plan": "Pro", "active": "Yes", "notes": null});
    let (st, b) = srv
        .post(
            &format!("/v1/models/{model_id}/predict"),
            &json!({"inputs": [numbers]}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let (x, y) = (
        a["outputs"][0][0].as_f64().unwrap(),
        b["outputs"][0][0].as_f64().unwrap(),
    );
    assert!((x - y).abs() < 1e-5, "{a} {b}");
    // A cell that does not read is refused, naming the column and its format.
    let mut bad = record.clone();
    bad["revenue"] = json!("lots");
    let (st, e) = srv
        .post(
            &format!("/v1/models/{model_id}/predict"),
            &json!({"inputs": [bad]}),
        )
        .await;
    assert_eq!(st, 422, "{e}");
    let detail = e["detail"].as_str().unwrap();
    assert!(
        detail.contains("revenue") && detail.contains("currency"),
        "{e}"
    );
    let mut bad = record.clone();
    bad["signup_date"] = json!("someday");
    let (st, e) = srv
        .post(
            &format!("/v1/models/{model_id}/predict"),
            &json!({"inputs": [bad]}),
        )
        .await;
    assert_eq!(st, 422, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("signup_date"), "{e}");
}

#[tokio::test]
async fn the_user_types_columns_and_a_type_that_does_not_read_names_its_cell() {
    let srv = Server::start(&[]).await;
    let csv = "when,amount,y\n05/03/2024,\"1,200\",a\n06/03/2024,\"3,400\",b\n07/03/2024,12,a\n08/03/2024,7,b\n";
    // Read alone, the order is ambiguous (month first); the user says day first.
    let (st, ds) = upload(&srv, "target=y", csv.into()).await;
    assert_eq!(st, 201, "{ds}");
    assert_eq!(column(&ds, "when")["format"]["date"]["order"], "mdy");
    assert_eq!(column(&ds, "when")["format"]["date"]["ambiguous"], true);
    let q =
        urlencode(r#"{"when":{"type":"date","order":"dmy","weekday":true},"amount":"numeric"}"#);
    let (st, ds) = upload(&srv, &format!("target=y&columns={q}"), csv.into()).await;
    assert_eq!(st, 201, "{ds}");
    assert_eq!(column(&ds, "when")["format"]["date"]["order"], "dmy");
    assert_eq!(column(&ds, "when")["format"]["date"]["weekday"], true);
    let id = ds["id"].as_str().unwrap();
    let (_, rows) = srv.get(&format!("/v1/datasets/{id}/rows")).await;
    assert_eq!(rows["rows"][0]["features"][0], "2024-03-05", "{rows}");
    assert_eq!(rows["rows"][0]["features"][1], 1200.0, "{rows}");

    // The user says the thousands separator: "1'200" and "3'400" read as thousands (alone,
    // a quote between digits is no number); a bad one is refused at its parameter.
    let csv = "amount,y\n1'200,a\n3'400,b\n12,a\n7,b\n";
    let (st, ds) = upload(&srv, "target=y&thousands=%27", csv.into()).await;
    assert_eq!(st, 201, "{ds}");
    assert_eq!(column(&ds, "amount")["type"], "numeric", "{ds}");
    let (st, e) = upload(&srv, "target=y&thousands=x", csv.into()).await;
    assert_eq!(st, 422, "{e}");
    assert_eq!(e["pointer"], "/thousands", "{e}");
    // A column typed numeric whose third row is not a number: that cell is named.
    let csv = "amount,y\n\"$1,200\",a\n$5,b\nabout ten,a\n$7,b\n";
    let (st, e) = upload(&srv, "target=y&columns=amount:numeric", csv.into()).await;
    assert_eq!(st, 422, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("about ten"), "{e}");
    assert_eq!(e["pointer"], "/columns/amount", "{e}");
    // A date override on a column that is not dates.
    let csv = "when,y\n2024-01-05,a\nsoon,b\n";
    let q = urlencode(r#"{"when":"date"}"#);
    let (st, e) = upload(&srv, &format!("target=y&columns={q}"), csv.into()).await;
    assert_eq!(st, 422, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("\"soon\""), "{e}");
    // An order for a column not typed date, and an unknown order.
    for (q, at) in [
        (
            r#"{"when":{"type":"numeric","order":"dmy"}}"#,
            "/columns/when/order",
        ),
        (
            r#"{"when":{"type":"date","order":"ydm"}}"#,
            "/columns/when/order",
        ),
    ] {
        let (st, e) = upload(
            &srv,
            &format!("target=y&columns={}", urlencode(q)),
            "when,y\n1,a\n2,b\n".into(),
        )
        .await;
        assert_eq!(st, 422, "{e}");
        assert_eq!(e["pointer"], at, "{e}");
    }
}

#[tokio::test]
async fn european_money_in_a_semicolon_file() {
    let srv = Server::start(&[]).await;
    let mut csv = String::from("Stadt;Preis;Datum;Klasse\n");
    for i in 0..40 {
        csv.push_str(&format!(
            "Berlin;{}.{:03},{:02} €;{:02}.{:02}.2023;{}\n",
            1 + i % 9,
            (i * 37) % 1000,
            i % 100,
            1 + i % 28,
            1 + i % 12,
            i % 2
        ));
    }
    let (st, ds) = upload(&srv, "target=Klasse", csv).await;
    assert_eq!(st, 201, "{ds}");
    assert_eq!(ds["dialect"]["delimiter"], ";", "{ds}");
    assert_eq!(column(&ds, "Preis")["type"], "numeric", "{ds}");
    assert_eq!(column(&ds, "Preis")["format"]["number"]["decimal"], ",");
    assert_eq!(column(&ds, "Datum")["format"]["date"]["order"], "dmy");
    let id = ds["id"].as_str().unwrap();
    let (_, rows) = srv.get(&format!("/v1/datasets/{id}/rows?limit=2")).await;
    assert_eq!(rows["rows"][1]["features"][1], 2037.01, "{rows}");
    // One city in every row: a constant column, said.
    assert!(
        ds["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["code"] == "constant_column" && w["column"] == "Stadt"),
        "{ds}"
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn json_lines_upload_as_a_csv_reads() {
    let srv = Server::start(&[]).await;
    let mut body = String::new();
    for i in 0..30 {
        body.push_str(&format!(
            "{{\"id\": \"r{i}\", \"price\": \"${},{:03}.00\", \"when\": \"2024-{:02}-{:02}\", \"ok\": {}, \"y\": \"{}\"}}\n",
            1 + i % 5,
            i * 7,
            1 + i % 12,
            1 + i % 28,
            i % 2 == 0,
            ["a", "b"][i % 2]
        ));
    }
    body.push_str("{\"price\": null, \"y\": \"a\", \"extra\": 3}\n");
    let (st, ds) = split(
        srv.post_raw(
            "/v1/datasets?target=y&name=lines",
            "application/x-ndjson",
            body.into_bytes(),
        )
        .await,
    )
    .await;
    assert_eq!(st, 201, "{ds}");
    assert_eq!(ds["rows"], 31);
    assert_eq!(column(&ds, "price")["type"], "numeric", "{ds}");
    assert_eq!(column(&ds, "when")["type"], "date", "{ds}");
    assert_eq!(column(&ds, "ok")["type"], "boolean", "{ds}");
    assert_eq!(column(&ds, "id")["type"], "ignore", "{ds}");
    assert_eq!(column(&ds, "extra")["missing"], 30, "{ds}");
    assert!(ds.get("dialect").is_none(), "{ds}");
    // A line that is no object is named.
    let (st, e) = split(
        srv.post_raw(
            "/v1/datasets?target=y",
            "application/x-ndjson",
            b"{\"a\": 1, \"y\": 2}\n[3]\n".to_vec(),
        )
        .await,
    )
    .await;
    assert_eq!(st, 400, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("line 2"), "{e}");
}

#[tokio::test]
async fn a_regression_standardises_its_targets_unless_its_spec_says_otherwise() {
    let srv = Server::start(&[]).await;
    // House prices in the millions: a line in the number of rooms.
    let mut csv = String::from("rooms,price\n");
    for i in 0..200 {
        csv.push_str(&format!(
            "{},{}\n",
            1 + i % 8,
            1_000_000 + 150_000 * (1 + i % 8)
        ));
    }
    let (st, ds) = upload(&srv, "target=price", csv).await;
    assert_eq!(st, 201, "{ds}");
    let submit = |extra: Value| {
        let mut spec = json!({"dataset_id": ds["id"], "layers": [{"units": 8, "activation": "relu"}, {"units": 1}],
            "loss": "mse", "optimizer": {"type": "adam", "learning_rate": 0.05}, "epochs": 60,
            "batch_size": 20, "seed": 2});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        spec
    };
    let (st, job) = srv.post("/v1/jobs", &submit(json!({}))).await;
    assert_eq!(st, 202, "{job}");
    assert_eq!(job["spec"]["standardize_target"], true, "{job}");
    let done = srv
        .wait_job(job["id"].as_str().unwrap(), Duration::from_secs(120))
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    // The model answers in the target's units: 4 rooms cost 1.6M.
    let (st, p) = srv
        .post(
            &format!("/v1/models/{}/predict", done["model_id"].as_str().unwrap()),
            &json!({"inputs": [{"rooms": 4}]}),
        )
        .await;
    assert_eq!(st, 200, "{p}");
    let got = p["outputs"][0][0].as_f64().unwrap();
    assert!((got - 1_600_000.0).abs() < 80_000.0, "{p}");
    // Said false, it stays false; a sigmoid output layer cannot fold the scale, so it is not
    // defaulted there.
    let (st, job) = srv
        .post("/v1/jobs", &submit(json!({"standardize_target": false})))
        .await;
    assert_eq!(st, 202, "{job}");
    assert!(job["spec"].get("standardize_target").is_none(), "{job}");
    let (st, job) = srv
        .post(
            "/v1/jobs",
            &submit(json!({"layers": [{"units": 1, "activation": "sigmoid"}]})),
        )
        .await;
    assert_eq!(st, 202, "{job}");
    assert!(job["spec"].get("standardize_target").is_none(), "{job}");
}

async fn upload_as(srv: &Server, query: &str, ctype: &str, body: Vec<u8>) -> (u16, Value) {
    split(
        srv.post_raw(&format!("/v1/datasets?{query}"), ctype, body)
            .await,
    )
    .await
}

fn data_file(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Parquet as pandas writes it reads as the same file as a CSV does: the same columns, types
/// and rows (`NA` cells are Parquet's nulls).
#[tokio::test]
async fn parquet_from_pandas_reads_as_its_csv_does() {
    let srv = Server::start(&[]).await;
    let (st, pq) = upload_as(
        &srv,
        "target=species",
        "application/vnd.apache.parquet",
        data_file("penguins.parquet"),
    )
    .await;
    assert_eq!(st, 201, "{pq}");
    let (st, csv) = upload_as(
        &srv,
        "target=species",
        "text/csv",
        data_file("penguins.csv"),
    )
    .await;
    assert_eq!(st, 201, "{csv}");
    for field in ["rows", "inputs", "feature_names", "target_names", "classes"] {
        assert_eq!(pq[field], csv[field], "{field}");
    }
    let kinds = |d: &Value| -> Vec<(Value, Value)> {
        d["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].clone(), c["type"].clone()))
            .collect()
    };
    assert_eq!(kinds(&pq), kinds(&csv));
    let rows = |id: &str| {
        let srv = &srv;
        let id = id.to_owned();
        async move {
            srv.get(&format!("/v1/datasets/{id}/rows?limit=400"))
                .await
                .1["rows"]
                .clone()
        }
    };
    assert_eq!(
        rows(pq["id"].as_str().unwrap()).await,
        rows(csv["id"].as_str().unwrap()).await
    );
}

/// Each kind a Parquet file types itself: an identifier, a UTC timestamp, a date, a decimal,
/// a boolean, a nullable integer, a float with NaN (zstd, two row groups); trained on and
/// predicted by record with the cells as text. A file without its target is stored for
/// scoring; a list column, a body that is not Parquet and a CSV-only parameter are 422s.
#[tokio::test]
async fn parquet_kinds_train_and_predict() {
    let srv = Server::start(&[]).await;
    let pq = "application/vnd.apache.parquet";
    let (st, ds) = upload_as(&srv, "target=label", pq, data_file("kinds.parquet")).await;
    assert_eq!(st, 201, "{ds}");
    let kind = |n: &str| column(&ds, n)["type"].as_str().unwrap().to_owned();
    assert_eq!(ds["rows"], 200);
    assert_eq!(kind("id"), "ignore");
    assert_eq!(kind("when"), "date");
    assert_eq!(column(&ds, "when")["format"]["date"]["time"], true);
    assert_eq!(kind("day"), "date");
    assert_eq!(kind("price"), "numeric");
    assert_eq!(kind("flag"), "boolean");
    assert_eq!(kind("count"), "numeric");
    assert_eq!(column(&ds, "count")["missing"], 19);
    assert_eq!(kind("ratio"), "numeric");
    assert_eq!(column(&ds, "ratio")["missing"], 16);
    let id = ds["id"].as_str().unwrap();
    let (_, rows) = srv
        .get(&format!("/v1/datasets/{id}/rows?offset=121&limit=1"))
        .await;
    // Row 122 (the second row group's second row): price 477.21 (121 × 37 mod 500), its day.
    let row = &rows["rows"][0]["features"];
    assert_eq!(row[0], "K0121", "{rows}");
    assert_eq!(row[2], "2023-12-30", "{rows}");
    assert!((row[3].as_f64().unwrap() - 477.21).abs() < 1e-3, "{rows}");

    let (st, job) = srv
        .post(
            "/v1/jobs",
            &json!({"dataset_id": id, "layers": [{"units": 16, "activation": "relu"}, {}],
                "loss": "binary_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.01},
                "epochs": 5, "batch_size": 32, "seed": 1}),
        )
        .await;
    assert_eq!(st, 202, "{job}");
    let done = srv
        .wait_job(job["id"].as_str().unwrap(), Duration::from_secs(120))
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let model = done["model_id"].as_str().unwrap();
    let (st, a) = srv
        .post(
            &format!("/v1/models/{model}/predict"),
            &json!({"inputs": [{"id": "X1", "when": "2024-02-03T10:00:00Z", "day": "2023-06-01",
                "price": 321.5, "flag": true, "count": null, "ratio": 0.5}]}),
        )
        .await;
    assert_eq!(st, 200, "{a}");

    // Without its target: every column a feature, for scoring.
    let (st, bare) = upload_as(&srv, "labels=none", pq, data_file("kinds.parquet")).await;
    assert_eq!((st, &bare["target_kind"]), (201, &json!("none")), "{bare}");
    assert_eq!(bare["feature_names"].as_array().unwrap().len(), 8);

    for (query, body, status, pointer, needle) in [
        ("", data_file("nested.parquet"), 422, "tags", "lists"),
        (
            "",
            data_file("gzip.parquet"),
            422,
            "snappy, zstd or lz4",
            "compressed with gzip",
        ),
        // A body that is not the format it says is unreadable (400), as a broken CSV is.
        (
            "",
            b"x,y\n1,2\n".to_vec(),
            400,
            "",
            "not a readable Parquet file",
        ),
        (
            "delimiter=%3B",
            data_file("kinds.parquet"),
            422,
            "/delimiter",
            "CSV",
        ),
        (
            "target=nope",
            data_file("kinds.parquet"),
            422,
            "/target",
            "nope",
        ),
    ] {
        let (st, e) = upload_as(&srv, query, pq, body).await;
        assert_eq!(st, status, "{query}: {e}");
        let text = e.to_string();
        assert!(
            text.contains(pointer) && text.contains(needle),
            "{query}: {e}"
        );
    }

    // A small file whose pages decode to more than a body may carry: 413 before decoding.
    let body = data_file("repetitive.parquet");
    assert!(body.len() < 20_000, "{}", body.len());
    let small = Server::start(&["--max-body-bytes", "100000"]).await;
    let (st, e) = upload_as(&small, "", pq, body).await;
    assert_eq!(st, 413, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("decoded"), "{e}");
}
