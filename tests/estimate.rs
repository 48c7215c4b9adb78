//! Issue 15, item 11: the dry run's time estimate against the epochs' measured time. A test
//! binary of its own: timings of sub-millisecond epochs mean something only when no other
//! test of the same binary trains beside them (cargo runs test binaries one at a time).

mod common;

use std::time::Duration;

use common::Server;
use serde_json::{Value, json};

/// Item 11: the dry run's time estimate was 4–6× too low (a fixed 20 GFLOP/s, no cost per
/// mini-batch), and its `spec` did not fill in defaults. The estimate now comes from the
/// engine's speed measured on the server's own pool; on the README's iris job and on a
/// 256-256 network it is within a factor of two of the epochs' measured time, and the spec
/// it answers, submitted as it is, trains exactly what the original trains.
/// The server's dry-run estimate against the measured median epoch of the README's iris job
/// and of a 256-256 network: the server, the iris dataset and spec, and the two ratios.
async fn estimate_ratios() -> (Server, Value, Value, Vec<f64>) {
    let srv = Server::start(&[]).await;
    let r = srv
        .post_raw(
            "/v1/datasets?name=iris&target=target",
            "text/csv",
            include_str!("../examples/iris.csv"),
        )
        .await;
    let (st, iris) = common::split(r).await;
    assert_eq!(st, 201, "{iris}");
    let (st, wide) = srv.post("/v1/datasets", &common::wide(2000, 32)).await;
    assert_eq!(st, 201, "{wide}");
    let iris_spec = json!({
        "dataset_id": iris["id"],
        "layers": [{"units": 16, "activation": "relu"}, {"dropout": 0.1}, {}],
        "loss": "categorical_crossentropy",
        "optimizer": "adam",
        "epochs": 30, "batch_size": 16, "validation_split": 0.2, "seed": 3
    });
    let wide_spec = json!({
        "dataset_id": wide["id"],
        "layers": [{"units": 256, "activation": "relu"}, {"units": 256, "activation": "relu"}, {}],
        "loss": "mse", "epochs": 5, "batch_size": 64, "validation_split": 0.1, "seed": 3
    });
    let mut ratios = vec![];
    for (spec, epochs) in [(&iris_spec, 30), (&wide_spec, 5)] {
        let (st, dry) = srv.post("/v1/jobs?dry_run=true", spec).await;
        assert_eq!(st, 200, "{dry}");
        let estimated = dry["estimated_seconds_per_epoch"].as_f64().unwrap();
        let (st, job) = srv.post("/v1/jobs", spec).await;
        assert_eq!(st, 202, "{job}");
        let id = job["id"].as_str().unwrap();
        srv.wait_job(id, Duration::from_secs(120)).await;
        let mut times: Vec<f64> = common::history(&srv, id, epochs)
            .await
            .iter()
            .map(|e| e["elapsed_ms"].as_f64().unwrap() / 1e3)
            .collect();
        times.sort_by(f64::total_cmp);
        let measured = times[times.len() / 2];
        let ratio = estimated / measured;
        eprintln!("estimate: {estimated} s, measured {measured} s per epoch, ratio {ratio}");
        ratios.push(ratio);
    }
    (srv, iris, iris_spec, ratios)
}

/// Item 11: the dry run's time estimate was 4–6× too low (a fixed 20 GFLOP/s, no cost per
/// mini-batch), and its `spec` did not fill in defaults. The estimate now comes from the
/// engine's speed measured on the server's own pool; on the README's iris job and on a
/// 256-256 network it is within a factor of two of the epochs' measured time, and the spec
/// it answers, submitted as it is, trains exactly what the original trains.
///
/// The server measures its speed once, at start; a machine whose load changes between that
/// and the job (CI's two cores, shared with whatever else runs) can put a sub-millisecond
/// epoch off by more than the factor. So a server whose estimate misses is started afresh
/// (measuring again), up to three times: an estimate that is wrong fails all three.
#[tokio::test]
async fn the_dry_run_estimate_is_within_a_factor_of_two_and_its_spec_is_filled_in() {
    let mut tries = vec![];
    let (srv, iris, iris_spec) = loop {
        let (srv, iris, spec, ratios) = estimate_ratios().await;
        let within = ratios.iter().all(|r| (0.5..=2.0).contains(r));
        tries.push(ratios);
        if within {
            break (srv, iris, spec);
        }
        assert!(
            tries.len() < 3,
            "estimated / measured seconds per epoch (iris, 256-256), three servers: {tries:?}"
        );
    };

    // The spec comes back with every default the run would use written out.
    let (_, dry) = srv.post("/v1/jobs?dry_run=true", &iris_spec).await;
    let filled = &dry["spec"];
    assert_eq!(
        filled["layers"],
        json!([
            {"type": "dense", "units": 16, "activation": "relu",
             "kernel_initializer": "glorot_uniform", "bias_initializer": "zeros"},
            {"type": "dropout", "dropout": 0.1},
            {"type": "dense", "units": 3, "activation": "softmax",
             "kernel_initializer": "glorot_uniform", "bias_initializer": "zeros"}
        ]),
        "{filled}"
    );
    let opt = &filled["optimizer"];
    assert_eq!(opt["type"], "adam", "{opt}");
    for (field, value) in [("learning_rate", 0.001), ("beta_1", 0.9), ("beta_2", 0.999)] {
        assert!(
            (opt[field].as_f64().unwrap() - value).abs() < 1e-6,
            "{field}: {opt}"
        );
    }
    // Submitted as it is, the filled-in spec trains the same epochs, loss for loss.
    let mut resubmitted = filled.clone();
    resubmitted["dataset_id"] = iris["id"].clone();
    let (st, a) = srv.post("/v1/jobs", &iris_spec).await;
    assert_eq!(st, 202, "{a}");
    let (st, b) = srv.post("/v1/jobs", &resubmitted).await;
    assert_eq!(st, 202, "{b}: {resubmitted}");
    let mut losses = vec![];
    for j in [&a, &b] {
        let id = j["id"].as_str().unwrap();
        srv.wait_job(id, Duration::from_secs(60)).await;
        losses.push(common::losses(&srv, id, 30).await);
    }
    assert_eq!(losses[0], losses[1]);
}
