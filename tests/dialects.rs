//! Files as spreadsheets and European locales export them: semicolons with decimal commas,
//! tabs, pipes, Windows-1252 text. Each is uploaded as it is (the dialect sniffed, or given)
//! and must read to exactly the rows its plain comma-separated form reads to; bad dialect
//! settings get a problem naming the setting, and a missing column names the delimiter used.

mod common;

use common::{Server, split};
use serde_json::{Value, json};

const PENGUINS: &str = include_str!("data/penguins.csv");

async fn upload(srv: &Server, query: &str, ctype: &str, body: Vec<u8>) -> (u16, Value) {
    split(
        srv.post_raw(&format!("/v1/datasets?{query}"), ctype, body)
            .await,
    )
    .await
}

/// The penguins as a German spreadsheet writes them: semicolons, decimal commas, points
/// grouping thousands, Windows-1252 text (an island renamed to carry an umlaut).
fn german(csv: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in csv.lines() {
        let cells: Vec<String> = line
            .split(',')
            .map(|c| match c.parse::<f64>() {
                Ok(_) if c.contains('.') => c.replace('.', ","),
                Ok(v) if v >= 1000.0 => format!("{}.{:03}", (v / 1000.0) as u64, v as u64 % 1000),
                _ => c.replace("Dream", "Träum"),
            })
            .collect();
        let line = cells.join(";");
        out.extend(line.chars().map(|ch| match ch {
            'ä' => 0xe4,
            c => c as u8,
        }));
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Everything a dataset's rows and profile say, for comparing two uploads of one table.
async fn contents(srv: &Server, ds: &Value) -> Value {
    let id = ds["id"].as_str().unwrap();
    let (st, rows) = srv
        .get(&format!("/v1/datasets/{id}/rows?limit=10000"))
        .await;
    assert_eq!(st, 200, "{rows}");
    let (st, full) = srv.get(&format!("/v1/datasets/{id}")).await;
    assert_eq!(st, 200, "{full}");
    // A decimal-comma file's numeric columns carry that format (and say so in their reason),
    // so a model reads their text in that locale: the rest is the same.
    let mut columns = full["columns"].clone();
    let mut profile = full["profile"].clone();
    for c in columns
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .chain(profile["columns"].as_array_mut().unwrap().iter_mut())
    {
        let o = c.as_object_mut().unwrap();
        if o.get("format")
            .is_some_and(|f| f["number"]["decimal"] == ",")
        {
            o.remove("format");
            o.remove("reason");
        } else if o.get("type").is_some_and(|t| t == "numeric") && o.get("format").is_none() {
            o.remove("reason");
        }
    }
    json!({
        "rows": rows["rows"],
        "columns": columns,
        "profile": profile,
        "classes": full["classes"],
    })
}

#[tokio::test]
async fn exports_in_other_dialects_read_as_their_comma_separated_form() {
    let srv = Server::start(&[]).await;
    let plain_csv = PENGUINS.replace("Dream", "Träum");
    let (st, plain) = upload(
        &srv,
        "target=species",
        "text/csv",
        plain_csv.clone().into_bytes(),
    )
    .await;
    assert_eq!(st, 201, "{plain}");
    assert_eq!(plain["dialect"]["delimiter"], ",");
    let want = contents(&srv, &plain).await;

    // Sniffed: semicolons, decimal commas, Windows-1252.
    let (st, de) = upload(&srv, "target=species", "text/csv", german(PENGUINS)).await;
    assert_eq!(st, 201, "{de}");
    assert_eq!(
        de["dialect"],
        json!({"delimiter": ";", "quote": "\"", "decimal": ",", "encoding": "windows-1252",
               "sniffed": ["delimiter", "decimal", "encoding"]})
    );
    assert_eq!(contents(&srv, &de).await, want);
    assert_eq!(
        de["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "body_mass_g")
            .unwrap()["type"],
        "numeric",
        "{de}"
    );

    // Given: the same file with every setting said.
    let (st, given) = upload(
        &srv,
        "target=species&delimiter=%3B&decimal=,&encoding=latin-1",
        "text/csv",
        german(PENGUINS),
    )
    .await;
    assert_eq!(st, 201, "{given}");
    assert_eq!(given["dialect"]["sniffed"], json!([]));
    assert_eq!(contents(&srv, &given).await, want);

    // Tabs, by media type, with a quoted field holding a tab: read as the comma file with
    // that field; pipes, sniffed.
    let quoted = plain_csv.replace("Torgersen", "\"Torg\tersen\"");
    let (st, plain_tab) = upload(&srv, "target=species", "text/csv", quoted.into_bytes()).await;
    assert_eq!(st, 201, "{plain_tab}");
    let tsv = plain_csv
        .replace(',', "\t")
        .replace("Torgersen", "\"Torg\tersen\"");
    let (st, tab) = upload(
        &srv,
        "target=species",
        "text/tab-separated-values",
        tsv.into_bytes(),
    )
    .await;
    assert_eq!(st, 201, "{tab}");
    assert_eq!(tab["dialect"]["delimiter"], "\t");
    assert_eq!(tab["dialect"]["sniffed"], json!(["decimal", "encoding"]));
    assert_eq!(contents(&srv, &tab).await, contents(&srv, &plain_tab).await);
    let piped = plain_csv.replace(',', "|");
    let (st, pipe) = upload(&srv, "target=species", "text/csv", piped.into_bytes()).await;
    assert_eq!(st, 201, "{pipe}");
    assert_eq!(pipe["dialect"]["delimiter"], "|");
    assert_eq!(contents(&srv, &pipe).await, want);
}

#[tokio::test]
async fn a_large_semicolon_file_streams_through_the_transcoder() {
    let srv = Server::start(&[]).await;
    // About 3 MB: past the sniffer's head and over several pieces.
    let rows = 120_000;
    let mut plain = String::from("id_text,x,city,y\n");
    let mut de = String::from("id_text;x;city;y\n");
    for i in 0..rows {
        let x = (i % 1000) as f64 / 8.0 - 40.0;
        let city = ["Köln", "Paris, FR", "Rom"][i % 3];
        plain.push_str(&format!("t{},{x},\"{city}\",{}\n", i % 7, i % 2));
        de.push_str(&format!(
            "t{};{};{city};{}\n",
            i % 7,
            x.to_string().replace('.', ","),
            i % 2
        ));
    }
    let (st, a) = upload(&srv, "target=y", "text/csv", plain.into_bytes()).await;
    assert_eq!(st, 201, "{a}");
    let (st, b) = upload(&srv, "target=y", "text/csv", de.into_bytes()).await;
    assert_eq!(st, 201, "{b}");
    assert_eq!(b["dialect"]["decimal"], ",");
    assert_eq!(b["rows"], rows);
    assert_eq!(contents(&srv, &b).await, contents(&srv, &a).await);
}

#[tokio::test]
async fn bad_dialect_settings_and_missing_columns_say_what_to_change() {
    let srv = Server::start(&[]).await;
    let file = || b"Stadt;Preis\nBerlin;1,5\nKoeln;2,5\nRom;3\n".to_vec();
    for (query, field) in [
        ("delimiter=ab", "/delimiter"),
        ("delimiter=x", "/delimiter"),
        ("decimal=%3B", "/decimal"),
        ("encoding=ebcdic", "/encoding"),
        ("quote=%3B&delimiter=%3B", "/quote"),
        ("delimiter=,&decimal=,", "/decimal"),
    ] {
        let (st, p) = upload(&srv, query, "text/csv", file()).await;
        assert!((400..500).contains(&st), "{query}: {st} {p}");
        assert_eq!(p["errors"][0]["pointer"], field, "{query}: {p}");
    }
    // Forced to commas, the header is one column: the error says so and what to say instead.
    let (st, p) = upload(&srv, "delimiter=,&target=Preis", "text/csv", file()).await;
    assert!((400..500).contains(&st), "{st} {p}");
    let detail = p["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("read with delimiter \",\"") && detail.contains("?delimiter=%3B"),
        "{p}"
    );
    // Nothing was stored by the refusals.
    let (_, list) = srv.get("/v1/datasets").await;
    assert_eq!(list["total"], 0, "{list}");
}
