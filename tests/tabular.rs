//! Real tabular data over HTTP: CSVs with text categories, empty cells and text targets are
//! uploaded as they are, profiled, trained with default settings, and predicted by record.
//! The files in tests/data (penguins, a passenger list) say where they come from in its README.

mod common;

use std::time::Duration;

use common::{Server, split};
use serde_json::{Value, json};

const PENGUINS: &str = include_str!("data/penguins.csv");
const TITANIC: &str = include_str!("data/titanic.csv");

async fn upload_csv(srv: &Server, query: &str, body: &str) -> (u16, Value) {
    split(
        srv.post_raw(
            &format!("/v1/datasets?{query}"),
            "text/csv",
            body.to_string(),
        )
        .await,
    )
    .await
}

fn column<'a>(ds: &'a Value, name: &str) -> &'a Value {
    ds["columns"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no column {name} in {ds}"))
}

fn profile_column<'a>(ds: &'a Value, name: &str) -> &'a Value {
    ds["profile"]["columns"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no profile of {name} in {ds}"))
}

async fn train(srv: &Server, spec: Value) -> Value {
    let (st, job) = srv.post("/v1/jobs", &spec).await;
    assert_eq!(st, 202, "{job}");
    let done = srv
        .wait_job(job["id"].as_str().unwrap(), Duration::from_secs(120))
        .await;
    assert_eq!(done["status"], "succeeded", "{done}\n{}", srv.log());
    done
}

#[tokio::test]
async fn penguins_upload_as_they_are_and_predict_by_record() {
    let srv = Server::start(&[]).await;
    let (st, ds) = upload_csv(&srv, "name=penguins&target=species", PENGUINS).await;
    assert_eq!(st, 201, "{ds}");
    assert_eq!(ds["rows"], 344);
    assert_eq!(ds["dropped_rows"], 0);
    assert_eq!(ds["classes"], json!(["Adelie", "Chinstrap", "Gentoo"]));
    // Column types are inferred and shown.
    assert_eq!(column(&ds, "island")["type"], "categorical");
    assert_eq!(column(&ds, "sex")["type"], "categorical");
    assert_eq!(column(&ds, "bill_length_mm")["type"], "numeric");
    assert_eq!(column(&ds, "bill_length_mm")["missing"], 2);
    assert_eq!(column(&ds, "sex")["missing"], 11);
    // The profile (on the dataset's own page): counts, categories, numbers, class balance.
    assert!(
        ds.get("profile").is_none(),
        "the upload answers the columns, not the profile"
    );
    let id = ds["id"].as_str().unwrap();
    let (st, ds) = srv.get(&format!("/v1/datasets/{id}")).await;
    assert_eq!(st, 200, "{ds}");
    let island = profile_column(&ds, "island");
    assert_eq!(island["distinct"], 3);
    assert_eq!(island["top"][0], json!({"value": "Biscoe", "count": 168}));
    let mass = profile_column(&ds, "body_mass_g");
    assert_eq!(mass["stats"]["min"], 2700.0);
    assert_eq!(mass["stats"]["max"], 6300.0);
    assert_eq!(
        ds["profile"]["target"]["classes"],
        json!([
            {"value": "Adelie", "count": 152},
            {"value": "Gentoo", "count": 124},
            {"value": "Chinstrap", "count": 68}
        ])
    );
    // The list shows the columns, and leaves the profile out.
    let (_, list) = srv.get("/v1/datasets").await;
    assert!(list["items"][0].get("profile").is_none(), "{list}");
    assert_eq!(list["items"][0]["columns"], ds["columns"]);

    let done = train(
        &srv,
        json!({
            "dataset_id": id,
            "layers": [{"units": 16, "activation": "relu"}, {}],
            "loss": "categorical_crossentropy",
            "optimizer": {"type": "adam", "learning_rate": 0.01},
            "epochs": 60, "batch_size": 16, "seed": 3, "validation_split": 0.25
        }),
    )
    .await;
    let val_accuracy = done["metrics"]["val_accuracy"].as_f64().unwrap();
    assert!(val_accuracy > 0.9, "{done}");
    let model_id = done["model_id"].as_str().unwrap();
    let (_, m) = srv.get(&format!("/v1/models/{model_id}")).await;
    // island one-hot (3), 4 measurements (each with a missing indicator when the training
    // split had a missing one), sex (2 and missing), year: 11 to 15 inputs, one name each.
    let names: Vec<&str> = m["feature_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(m["input_dim"], names.len(), "{m}");
    for n in [
        "island=Biscoe",
        "island=Dream",
        "island=Torgersen",
        "bill_length_mm",
        "sex=female",
        "sex=male",
        "sex (missing)",
        "year",
    ] {
        assert!(names.contains(&n), "{n} not in {names:?}");
    }
    assert_eq!(
        m["columns"][0],
        json!({"name": "island", "type": "categorical", "categories": ["Biscoe", "Dream", "Torgersen"]})
    );

    // Predict by record: a key left out is missing, an island never seen goes to "other".
    let records = json!({"inputs": [
        {"island": "Biscoe", "bill_length_mm": 48.6, "bill_depth_mm": 16.0,
         "flipper_length_mm": 230, "body_mass_g": 5800, "sex": "male", "year": 2009},
        {"island": "Dream", "bill_length_mm": 39.5, "bill_depth_mm": 18.8,
         "flipper_length_mm": null, "body_mass_g": 3650, "sex": "female"},
        {"island": "Atlantis", "bill_length_mm": 49.0, "bill_depth_mm": 19.5,
         "flipper_length_mm": 196, "body_mass_g": 3800, "sex": null, "year": 2008}
    ]});
    let (st, p) = srv
        .post(&format!("/v1/models/{model_id}/predict"), &records)
        .await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["labels"][0], "Gentoo", "{p}");
    assert_eq!(p["labels"][1], "Adelie", "{p}");
    assert_eq!(p["outputs"].as_array().unwrap().len(), 3);
    // The same rows as arrays in training column order give the same outputs.
    let arrays = json!({"inputs": [
        ["Biscoe", 48.6, 16.0, 230, 5800, "male", 2009],
        ["Dream", 39.5, 18.8, null, 3650, "female", null],
        ["Atlantis", 49.0, 19.5, 196, 3800, null, 2008]
    ]});
    let (st, pa) = srv
        .post(&format!("/v1/models/{model_id}/predict"), &arrays)
        .await;
    assert_eq!(st, 200, "{pa}");
    assert_eq!(pa["outputs"], p["outputs"]);

    // An unknown key is named; a row of the wrong width is refused at its pointer.
    let (st, e) = srv
        .post(
            &format!("/v1/models/{model_id}/predict"),
            &json!({"inputs": [{"island": "Biscoe", "beak": 3}]}),
        )
        .await;
    assert_eq!(st, 422, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("\"beak\""), "{e}");
    assert_eq!(e["pointer"], "/inputs/0", "{e}");
    let (st, e) = srv
        .post(
            &format!("/v1/models/{model_id}/predict"),
            &json!({"inputs": [["Biscoe", 48.6, 16.0, 230, 5800, "male", 2009], ["Biscoe", 1]]}),
        )
        .await;
    assert_eq!(st, 422, "{e}");
    assert_eq!(e["pointer"], "/inputs/1", "{e}");
    // Text in a numeric column is refused, naming the column.
    let (st, e) = srv
        .post(
            &format!("/v1/models/{model_id}/predict"),
            &json!({"inputs": [{"island": "Biscoe", "body_mass_g": "heavy"}]}),
        )
        .await;
    assert_eq!(st, 422, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("body_mass_g"), "{e}");

    // The encoder travels with the export: import, then predict bit for bit.
    let (st, doc) = srv.get(&format!("/v1/models/{model_id}/export")).await;
    assert_eq!(st, 200);
    assert!(doc["encoder"]["columns"].is_array(), "{doc}");
    let (st, imported) = srv.post("/v1/models?name=copy", &doc).await;
    assert_eq!(st, 201, "{imported}");
    let (_, pi) = srv
        .post(
            &format!("/v1/models/{}/predict", imported["id"].as_str().unwrap()),
            &records,
        )
        .await;
    assert_eq!(pi["outputs"], p["outputs"]);
    assert_eq!(pi["labels"], p["labels"]);
}

#[tokio::test]
async fn a_passenger_list_with_yes_no_target_and_an_unnamed_id_column() {
    let srv = Server::start(&[]).await;
    let (st, ds) = upload_csv(&srv, "name=titanic", TITANIC).await;
    assert_eq!(st, 201, "{ds}");
    assert_eq!(ds["rows"], 1316);
    // R's row names: an unnamed column counting 1, 2, 3, … is an id, suggested ignored.
    assert_eq!(column(&ds, "column_1")["type"], "ignore");
    assert_eq!(column(&ds, "class")["type"], "categorical");
    assert_eq!(ds["classes"], json!(["no", "yes"]));
    let id = ds["id"].as_str().unwrap();
    let done = train(
        &srv,
        json!({
            "dataset_id": id,
            "layers": [{"units": 8, "activation": "relu"}, {}],
            "loss": "binary_crossentropy",
            "optimizer": {"type": "adam", "learning_rate": 0.02},
            "epochs": 30, "batch_size": 32, "seed": 1, "validation_split": 0.2,
            "class_weight": "balanced"
        }),
    )
    .await;
    let acc = done["metrics"]["val_accuracy"].as_f64().unwrap();
    assert!(acc > 0.7, "{done}");
    let model_id = done["model_id"].as_str().unwrap();
    let (st, p) = srv
        .post(
            &format!("/v1/models/{model_id}/predict"),
            &json!({"inputs": [
                {"class": "1st class", "age": "adults", "sex": "women"},
                {"class": "3rd class", "age": "adults", "sex": "man"}
            ]}),
        )
        .await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["labels"], json!(["yes", "no"]), "{p}");

    // Per-job overrides: the id column as a category is too many categories.
    let (st, e) = srv
        .post(
            "/v1/jobs",
            &json!({"dataset_id": id, "layers": [{}], "loss": "binary_crossentropy",
                    "columns": {"column_1": "categorical"}}),
        )
        .await;
    assert_eq!(st, 422, "{e}");
    assert_eq!(e["pointer"], "/columns/column_1", "{e}");
    assert!(
        e["detail"].as_str().unwrap().contains("max_categories"),
        "{e}"
    );
    // … unless folded; a column that does not exist is named.
    let (st, dry) = srv
        .post(
            "/v1/jobs?dry_run=true",
            &json!({"dataset_id": id, "layers": [{}], "loss": "binary_crossentropy",
                    "columns": {"column_1": "categorical"}, "max_categories": 10}),
        )
        .await;
    assert_eq!(st, 200, "{dry}");
    let (st, e) = srv
        .post(
            "/v1/jobs",
            &json!({"dataset_id": id, "layers": [{}], "loss": "binary_crossentropy",
                    "columns": {"cabin": "categorical"}}),
        )
        .await;
    assert_eq!(st, 422, "{e}");
    assert_eq!(e["pointer"], "/columns/cabin");
    // class_weight names classes of the target
    let (st, e) = srv
        .post(
            "/v1/jobs",
            &json!({"dataset_id": id, "layers": [{}], "loss": "binary_crossentropy",
                    "class_weight": {"maybe": 2}}),
        )
        .await;
    assert_eq!(st, 422, "{e}");
    assert_eq!(e["pointer"], "/class_weight/maybe");
}

#[tokio::test]
async fn upload_overrides_missing_markers_and_errors_name_the_column() {
    let srv = Server::start(&[]).await;
    let csv = "customer_id,area_code,plan,minutes,notes,churn\n\
               c1,415,yes,100.5,,no\nc2,408,no,-,,yes\nc3,415,yes,120,,no\nc4,510,no,80,,no\n";
    // An entirely empty column is ignored, and the dataset warns of it …
    let (st, ds) = upload_csv(&srv, "", csv).await;
    assert_eq!(st, 201, "{ds}");
    assert_eq!(column(&ds, "notes")["type"], "ignore");
    assert_eq!(ds["warnings"][0]["code"], "empty_column", "{ds}");
    assert_eq!(ds["warnings"][0]["column"], "notes", "{ds}");
    // … and typed anything else by the user, it is a 422 that says what to do.
    let (st, e) = upload_csv(&srv, "columns=notes:categorical", csv).await;
    assert_eq!(st, 422, "{e}");
    assert_eq!(e["pointer"], "/columns/notes");
    assert!(e["detail"].as_str().unwrap().contains("ignore"), "{e}");
    // The user types a code column categorical and says "-" is missing.
    let (st, ds) = upload_csv(
        &srv,
        "columns=notes:ignore,area_code:categorical&na_values=-",
        csv,
    )
    .await;
    assert_eq!(st, 201, "{ds}");
    assert_eq!(column(&ds, "area_code")["type"], "categorical");
    assert_eq!(column(&ds, "plan")["type"], "boolean");
    assert_eq!(column(&ds, "customer_id")["type"], "ignore");
    assert_eq!(column(&ds, "minutes")["missing"], 1);
    let (_, full) = srv
        .get(&format!("/v1/datasets/{}", ds["id"].as_str().unwrap()))
        .await;
    assert_eq!(profile_column(&full, "area_code")["top"][0]["value"], "415");
    // Text in a column forced numeric; an unknown type.
    let (st, e) = upload_csv(&srv, "columns=plan:numeric", csv).await;
    assert_eq!(st, 422, "{e}");
    assert_eq!(e["pointer"], "/columns/plan", "{e}");
    let (st, e) = upload_csv(&srv, "columns=plan:datetime", csv).await;
    assert_eq!(st, 422, "{e}");
    assert_eq!(e["pointer"], "/columns/plan");
    // A target with one class cannot train a classifier.
    let one = "a,b,y\n1,x,yes\n2,y,yes\n";
    let (st, ds1) = upload_csv(&srv, "", one).await;
    assert_eq!(st, 201, "{ds1}");
    let (st, e) = srv
        .post(
            "/v1/jobs",
            &json!({"dataset_id": ds1["id"], "layers": [{}], "loss": "categorical_crossentropy"}),
        )
        .await;
    assert_eq!(st, 422, "{e}");
    assert_eq!(e["pointer"], "/loss");
    assert!(e["detail"].as_str().unwrap().contains("two classes"), "{e}");
}

#[tokio::test]
async fn json_records_validation_dataset_and_sample_weights() {
    let srv = Server::start(&[]).await;
    let rows = |n: usize, shift: usize| -> (Vec<Value>, Vec<Value>) {
        let mut f = vec![];
        let mut t = vec![];
        for i in 0..n {
            let k = i + shift;
            let color = ["red", "green", "blue"][k % 3];
            let size = if k.is_multiple_of(7) {
                Value::Null
            } else {
                json!((k % 10) as f64)
            };
            f.push(json!({"color": color, "size": size, "w": 1 + k % 2}));
            t.push(json!(if color == "red" { "hot" } else { "cold" }));
        }
        (f, t)
    };
    let (f, t) = rows(90, 0);
    let (st, train_ds) = srv
        .post(
            "/v1/datasets",
            &json!({"name": "train", "features": f, "targets": t}),
        )
        .await;
    assert_eq!(st, 201, "{train_ds}");
    assert_eq!(column(&train_ds, "size")["missing"], 13);
    let (f, t) = rows(30, 1);
    let (st, val_ds) = srv
        .post(
            "/v1/datasets",
            &json!({"name": "val", "features": f, "targets": t}),
        )
        .await;
    assert_eq!(st, 201, "{val_ds}");
    let done = train(
        &srv,
        json!({
            "dataset_id": train_ds["id"], "validation_dataset_id": val_ds["id"],
            "layers": [{"units": 4, "activation": "relu"}, {}],
            "loss": "binary_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.05},
            "epochs": 40, "seed": 2, "sample_weight": "w"
        }),
    )
    .await;
    assert_eq!(done["metrics"]["val_accuracy"], 1.0, "{done}");
    let model_id = done["model_id"].as_str().unwrap();
    let (_, m) = srv.get(&format!("/v1/models/{model_id}")).await;
    // color one-hot (3), size + missing indicator; w is the weight, not an input
    assert_eq!(m["input_dim"], 5, "{m}");
    // The weight column must exist and be numbers; not both kinds of validation.
    for (extra, pointer) in [
        (json!({"sample_weight": "nope"}), "/sample_weight"),
        (json!({"sample_weight": "color"}), "/sample_weight"),
        (json!({"validation_split": 0.2}), "/validation_split"),
    ] {
        let mut spec = json!({"dataset_id": train_ds["id"], "validation_dataset_id": val_ds["id"],
                              "layers": [{}], "loss": "binary_crossentropy"});
        if extra.get("validation_split").is_none() {
            spec.as_object_mut()
                .unwrap()
                .remove("validation_dataset_id");
        }
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let (st, e) = srv.post("/v1/jobs", &spec).await;
        assert_eq!(st, 422, "{extra}: {e}");
        assert_eq!(e["pointer"], pointer, "{e}");
    }
    // A validation class the training data never shows is refused at submit, not when the
    // job runs.
    let (f, mut t) = rows(30, 1);
    t[4] = json!("lukewarm");
    let (st, odd) = srv
        .post("/v1/datasets", &json!({"features": f, "targets": t}))
        .await;
    assert_eq!(st, 201, "{odd}");
    let (st, e) = srv
        .post(
            "/v1/jobs",
            &json!({"dataset_id": train_ds["id"], "validation_dataset_id": odd["id"],
                    "layers": [{}], "loss": "categorical_crossentropy"}),
        )
        .await;
    assert_eq!(st, 422, "{e}");
    assert_eq!(e["pointer"], "/validation_dataset_id", "{e}");
    assert!(
        e["detail"].as_str().unwrap().contains("\"lukewarm\""),
        "{e}"
    );
}

#[tokio::test]
async fn plain_numeric_models_take_records_by_feature_name_and_stay_as_they_were() {
    let srv = Server::start(&[]).await;
    let (st, ds) = upload_csv(
        &srv,
        "",
        "a,b,y\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n0.1,0.9,1\n0.9,0.1,1\n",
    )
    .await;
    assert_eq!(st, 201, "{ds}");
    let done = train(
        &srv,
        json!({"dataset_id": ds["id"], "layers": [{"units": 4, "activation": "tanh"}, {}],
               "loss": "binary_crossentropy", "epochs": 5, "seed": 1}),
    )
    .await;
    let model_id = done["model_id"].as_str().unwrap();
    let (_, doc) = srv.get(&format!("/v1/models/{model_id}/export")).await;
    assert!(
        doc.get("encoder").is_none(),
        "plain numbers need no encoder: {doc}"
    );
    let (st, by_name) = srv
        .post(
            &format!("/v1/models/{model_id}/predict"),
            &json!({"inputs": [{"b": 1, "a": 0}]}),
        )
        .await;
    assert_eq!(st, 200, "{by_name}");
    let (_, by_row) = srv
        .post(
            &format!("/v1/models/{model_id}/predict"),
            &json!({"inputs": [[0, 1]]}),
        )
        .await;
    assert_eq!(by_name["outputs"], by_row["outputs"]);
    let (st, e) = srv
        .post(
            &format!("/v1/models/{model_id}/predict"),
            &json!({"inputs": [{"a": 0}]}),
        )
        .await;
    assert_eq!(st, 422, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("\"b\""), "{e}");
}

/// A dataset with fewer than 2 rows that have a target cannot be trained on (one row cannot
/// be split, scaled or learned from): CSV and JSON uploads and inline job datasets are refused
/// with 422 at their rows, saying why — the public contract's one-row upload among them —
/// and nothing is stored. Two rows are enough.
#[tokio::test]
async fn a_dataset_needs_at_least_two_rows_with_a_target() {
    let srv = Server::start(&[]).await;
    let check = |st: u16, body: &Value, pointer: &str| {
        assert_eq!(st, 422, "{body}");
        assert_eq!(body["pointer"], pointer, "{body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains("a dataset needs at least 2 rows with a target to train on"),
            "{body}"
        );
    };
    // The contract's upload: one row, now that `x` is a category rather than an error.
    let (st, body) = upload_csv(&srv, "name=s&target=target", "a,b,target\n1,x,0\n").await;
    check(st, &body, "/rows");
    // Two rows, but one has no target: it is dropped, and the message says so.
    let (st, body) = upload_csv(&srv, "target=y", "a,y\n1,0\n2,\n").await;
    check(st, &body, "/rows");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("1 rows without a target were dropped"),
        "{body}"
    );
    let (st, body) = srv
        .post(
            "/v1/datasets",
            &json!({"features": [[1.0]], "targets": [0]}),
        )
        .await;
    check(st, &body, "/rows");
    let (st, body) = srv
        .post(
            "/v1/datasets",
            &json!({"features": [[1.0], [2.0]], "targets": ["a", null]}),
        )
        .await;
    check(st, &body, "/rows");
    let (st, body) = srv
        .post(
            "/v1/jobs",
            &json!({"dataset": {"features": [[1.0]], "targets": [1.0]},
                    "layers": [{"units": 1}], "loss": "mse"}),
        )
        .await;
    check(st, &body, "/dataset/rows");
    let (_, list) = srv.get("/v1/datasets").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");
    let (_, jobs) = srv.get("/v1/jobs").await;
    assert_eq!(jobs["items"].as_array().unwrap().len(), 0, "{jobs}");

    // Two rows with a target are a dataset.
    let (st, body) = upload_csv(&srv, "target=target", "a,b,target\n1,x,0\n2,y,1\n").await;
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["rows"], 2, "{body}");
    let (st, body) = srv
        .post(
            "/v1/datasets",
            &json!({"features": [[1.0], [2.0]], "targets": [0, 1]}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
}
