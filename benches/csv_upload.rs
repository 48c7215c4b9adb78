//! The CSV upload's CPU phases, without HTTP or a database: the streamed parse (pieces of
//! 1 MiB, as the HTTP layer hands them over), the join into columns, the profile, and making
//! the stored form's parts (its rows assembled from the columns). Prints the median of each
//! phase over the runs.
//!
//!     python3 -c "import sys; sys.path.insert(0, 'bench'); import tabular_upload as t; \
//!         t.make_csv('/tmp/tall.csv', 1000000, 20)"
//!     cargo bench --bench csv_upload -- /tmp/tall.csv label 5
use backprop::data::profile::Profile;
use backprop::data::{CsvStream, Limits, ReadOptions};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(path) = args.first() else {
        eprintln!("usage: csv_upload FILE [TARGET] [RUNS]");
        return;
    };
    let target = args.get(1).map(String::as_str).unwrap_or("label");
    let runs: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(5);
    let bytes = std::fs::read(path).expect("the file reads");
    let limits = Limits {
        max_rows: usize::MAX,
        max_cells: usize::MAX,
        ..Limits::default()
    };
    let (mut parse, mut join, mut profile, mut store) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let t0 = Instant::now();
        let mut csv = CsvStream::new(Some(target), limits, ReadOptions::default());
        for piece in bytes.chunks(1 << 20) {
            csv.push(piece).expect("the piece reads");
        }
        let t1 = Instant::now();
        let columns = csv.finish_columns().expect("the file reads");
        let t2 = Instant::now();
        let p = Profile::of(&columns);
        let t3 = Instant::now();
        let stored: usize = columns.into_stored_parts().map(|p| p.len()).sum();
        let t4 = Instant::now();
        assert!(stored > 0 && p.rows > 0);
        parse.push((t1 - t0).as_secs_f64());
        join.push((t2 - t1).as_secs_f64());
        profile.push((t3 - t2).as_secs_f64());
        store.push((t4 - t3).as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "parse {:.3} s, join {:.3} s, profile {:.3} s, stored parts {:.3} s (medians of {runs})",
        median(&mut parse),
        median(&mut join),
        median(&mut profile),
        median(&mut store)
    );
}
