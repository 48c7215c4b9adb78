//! Datasets: reading an upload (CSV or JSON, on a blocking thread), storing it within the
//! tenant's quota, and reading, listing and deleting a tenant's datasets.

use std::collections::BTreeMap;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;

use super::read::parse_json;
use super::{Error, IdempotencyKey, Result, Service};
use crate::clock::now_ms;
use crate::data::profile::Profile;
use crate::data::{
    self, Columns, Dataset, DialectOptions, Encoding, JsonDataset, ReadOptions, Summary,
};
use crate::nn::portable::tabular::ColumnType;
use crate::nn::portable::values::DateOrder;
use crate::store::{Cursor, DatasetRecord, Page, Store, StoreError};

/// An upload as the client sent it.
pub struct Upload {
    /// The media type's essence (`text/csv`, `application/json`; lower case).
    pub media_type: String,
    /// `?name=`, over a JSON body's own name.
    pub name: Option<String>,
    /// `?target=`: the target column of a CSV file.
    pub target: Option<String>,
    /// `?columns=` and `?na_values=` were given (they are for CSV uploads only).
    pub columns_given: bool,
    pub na_values_given: bool,
    /// `?task=`: what the target is for, over the inferred task.
    pub task: Option<crate::nn::run::spec::Task>,
    /// `?labels=none`: the dataset has no target (it is for scoring, not training).
    pub no_target: bool,
    pub body: UploadBody,
}

/// An upload's body: a CSV already parsed as it streamed in (its text is never held whole),
/// with the stored rows written meanwhile (when they were), or any other body's bytes.
pub enum UploadBody {
    Csv(
        Box<std::result::Result<Columns, data::DataError>>,
        Option<DatasetStream>,
    ),
    Bytes(Bytes),
}

/// How long an upload written as it arrives may keep its transaction open (SQLite has one
/// writer: every other write waits meanwhile), and how long the rows may pause before the
/// next arrive (a client slower than a piece every pause is not worth the wait; its upload
/// is written once read, as any other).
const STREAM_OPEN: Duration = Duration::from_secs(5);
const STREAM_PAUSE: Duration = Duration::from_millis(500);

/// Takes a CSV upload's stored rows on the reader's thread as each piece is read (see
/// `data::CsvStream::stream_rows`) for its [`DatasetStream`].
pub struct RowSink(tokio::sync::mpsc::Sender<Vec<u8>>);

impl RowSink {
    /// Hands over the next stored rows (waiting while the database is behind); `false` once
    /// the stream was given up: the rows are no longer wanted.
    pub fn send(&self, rows: Vec<u8>) -> bool {
        self.0.blocking_send(rows).is_ok()
    }
}

/// A CSV upload whose stored rows are written while it still arrives, in a transaction the
/// dataset's record commits ([`Store::write_dataset`]): part 0 will be the stored form's
/// head, the rows are parts 1, 2, …, and the tail follows them. The transaction opens with
/// the first rows (a file of one piece opens it at its end). It is given up, and rolled back,
/// when the rows pause longer than [`STREAM_PAUSE`], when it would stay open past
/// [`STREAM_OPEN`], when the file turns out not to stream (a text cell, an error), or when
/// this is dropped: the upload is then written once read, as any other.
pub struct DatasetStream {
    id: Uuid,
    end: tokio::sync::oneshot::Sender<StreamEnd>,
    task: tokio::task::JoinHandle<Result<bool>>,
}

/// What commits a [`DatasetStream`]: the record and the stored form's head and tail.
struct StreamEnd {
    record: DatasetRecord,
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl DatasetStream {
    /// Rolls back whatever was written, and waits until it is (on SQLite the transaction holds
    /// the only write lock).
    async fn give_up(self) {
        drop(self.end);
        let _ = self.task.await;
    }
}

/// The record of a parsed upload (its size not yet known): the profile and the schema are
/// made on a blocking thread.
async fn new_record(
    tenant: &str,
    id: Uuid,
    name: String,
    ds: Columns,
) -> Result<(Columns, DatasetRecord)> {
    let (ds, (profile, warnings), (summary, classes)) = tokio::task::spawn_blocking(move || {
        let (profile, rest) = rayon::join(
            || rayon::join(|| Profile::of(&ds), || crate::data::warnings::of(&ds)),
            || (ds.summary(), ds.classes()),
        );
        (ds, profile, rest)
    })
    .await?;
    let target_kind = match &ds.targets {
        crate::nn::Targets::Labels(_) => "labels",
        crate::nn::Targets::Values(v) if v.ncols() == 0 => "none",
        crate::nn::Targets::Values(_) => "values",
    };
    let mut meta = serde_json::json!({
        "feature_names": ds.feature_names(),
        "target_names": ds.target_names,
        "target_kind": target_kind,
        "classes": classes,
        "dropped_rows": ds.dropped_rows,
        "schema": summary,
        "profile": profile,
        "warnings": warnings,
    });
    if let (Some(d), Some(m)) = (ds.dialect, meta.as_object_mut()) {
        m.insert("dialect".into(), serde_json::json!(d));
    }
    if let (Some(t), Some(m)) = (ds.task, meta.as_object_mut()) {
        m.insert("task".into(), serde_json::json!(t));
    }
    let rec = DatasetRecord {
        id,
        tenant: tenant.to_string(),
        name,
        created_at: now_ms(),
        rows: ds.rows() as i64,
        inputs: ds.inputs() as i64,
        outputs: ds.outputs() as i64,
        meta,
        size_bytes: 0,
    };
    Ok((ds, rec))
}

/// The writing of a [`DatasetStream`]: rows to parts until the reader is done, then the end.
/// `Ok(true)` when committed, `Ok(false)` when given up (nothing stays written).
async fn write_streamed(
    store: Arc<dyn Store>,
    id: Uuid,
    tenant: String,
    mut rows: tokio::sync::mpsc::Receiver<Vec<u8>>,
    end: tokio::sync::oneshot::Receiver<StreamEnd>,
) -> Result<bool> {
    use crate::store::DatasetWrite;
    let Some(first) = rows.recv().await else {
        return Ok(false);
    };
    let deadline = tokio::time::Instant::now() + STREAM_OPEN;
    let (writes, writes_rx) = tokio::sync::mpsc::channel::<DatasetWrite>(2);
    let writing = tokio::spawn(async move {
        let writes = futures::stream::unfold(writes_rx, |mut rx| async move {
            rx.recv().await.map(|w| (w, rx))
        });
        store.write_dataset(id, &tenant, Box::pin(writes)).await
    });
    let mut part = 1i64;
    let mut next = Some(first);
    let mut committing = false;
    while let Some(r) = next.take() {
        if writes.send(DatasetWrite::Part(part, r)).await.is_err() {
            // The store failed: its error is the answer.
            break;
        }
        part += 1;
        let pause = (tokio::time::Instant::now() + STREAM_PAUSE).min(deadline);
        match tokio::time::timeout_at(pause, rows.recv()).await {
            Ok(Some(r)) => next = Some(r),
            // The reader is done: the end follows once the dataset is checked.
            Ok(None) => committing = true,
            Err(_) => {}
        }
    }
    // Given up (or done): the reader's next rows are refused, so it stops making them.
    drop(rows);
    if committing && let Ok(Ok(e)) = tokio::time::timeout_at(deadline, end).await {
        let record = e.record;
        let _ = writes.send(DatasetWrite::Part(0, e.head)).await;
        let _ = writes.send(DatasetWrite::Part(part, e.tail)).await;
        let _ = writes.send(DatasetWrite::Commit(record)).await;
    }
    drop(writes);
    Ok(writing.await??)
}

/// Whether a media type's essence is JSON Lines (one object per line).
pub fn is_jsonl(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines"
            | "application/jsonlines"
    )
}

/// Whether a media type's essence is read as CSV.
pub fn is_csv(media_type: &str) -> bool {
    matches!(
        media_type,
        "text/csv" | "application/csv" | "text/plain" | "text/tab-separated-values"
    )
}

/// What an upload says of its file's dialect (`?delimiter=`, `?decimal=`, `?quote=`,
/// `?encoding=`; a tab-separated media type says the delimiter): the rest is sniffed.
pub fn dialect_options(
    media_type: &str,
    delimiter: Option<&str>,
    decimal: Option<&str>,
    quote: Option<&str>,
    encoding: Option<&str>,
) -> Result<DialectOptions> {
    // One ASCII character that can separate fields (`tab` or `\t` for a tab).
    let one = |field: &str, v: &str| -> Result<u8> {
        let b = match v {
            "tab" | "\\t" | "\t" => b'\t',
            v if v.len() == 1 && v.is_ascii() => v.as_bytes()[0],
            _ => {
                return Err(Error::invalid(
                    format!("/{field}"),
                    format!("must be one ASCII character (or \"tab\"), got {v:?}"),
                ));
            }
        };
        if b.is_ascii_alphanumeric() || matches!(b, b'\n' | b'\r' | b' ') {
            return Err(Error::invalid(
                format!("/{field}"),
                format!("{v:?} cannot separate or quote fields"),
            ));
        }
        Ok(b)
    };
    let mut d = DialectOptions {
        delimiter: delimiter.map(|v| one("delimiter", v)).transpose()?,
        quote: quote.map(|v| one("quote", v)).transpose()?,
        decimal: match decimal {
            None => None,
            Some(".") => Some(b'.'),
            Some(",") => Some(b','),
            Some(v) => {
                return Err(Error::invalid(
                    "/decimal",
                    format!("must be \".\" or \",\", got {v:?}"),
                ));
            }
        },
        encoding: encoding
            .map(|v| {
                Encoding::parse(v).ok_or_else(|| {
                    Error::invalid(
                        "/encoding",
                        format!("must be utf-8, latin-1 or windows-1252, got {v:?}"),
                    )
                })
            })
            .transpose()?,
    };
    if media_type == "text/tab-separated-values" && d.delimiter.is_none() {
        d.delimiter = Some(b'\t');
    }
    if d.delimiter.is_some() && d.delimiter == d.quote {
        return Err(Error::invalid("/quote", "must differ from the delimiter"));
    }
    if d.delimiter == Some(b',') && d.decimal == Some(b',') {
        return Err(Error::invalid(
            "/decimal",
            "a decimal comma needs another delimiter (say ?delimiter=%3B)",
        ));
    }
    Ok(d)
}

/// The CSV reading options of `?columns=` (`name:type,…` or a JSON object) and `?na_values=`
/// (the cells read as missing, comma-separated; replaces the default list).
pub fn csv_options(columns: Option<&str>, na_values: Option<&str>) -> Result<ReadOptions> {
    let (types, orders, weekdays) = match columns {
        Some(c) => parse_column_types(c)?,
        None => Default::default(),
    };
    let na: Option<Vec<String>> = na_values.map(|v| v.split(',').map(str::to_owned).collect());
    let mut opts = ReadOptions::new(na.as_deref(), types);
    opts.date_orders = orders;
    opts.date_weekdays = weekdays;
    Ok(opts)
}

/// A column's setting in the JSON form of `?columns=`: a type, or a type with its options.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum ColumnSetting {
    Type(String),
    Options(ColumnOptions),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnOptions {
    #[serde(rename = "type")]
    kind: String,
    /// A date column's day/month order: `ymd`, `mdy` or `dmy`.
    #[serde(default)]
    order: Option<String>,
    /// Whether a date column's day of the week is an input (default: for timestamps).
    #[serde(default)]
    weekday: Option<bool>,
}

/// Column types, date orders, and date columns' weekday inputs.
type ColumnTypes = (
    BTreeMap<String, ColumnType>,
    BTreeMap<String, DateOrder>,
    BTreeMap<String, bool>,
);

/// Reads `?columns=name:type,name:type` (or a JSON object of types, or of
/// `{"type": "date", "order": "dmy"}`) into column types and date orders.
fn parse_column_types(q: &str) -> Result<ColumnTypes> {
    let bad = |m: String| Error::invalid("/columns", m);
    let q = q.trim();
    let mut types = BTreeMap::new();
    let mut orders = BTreeMap::new();
    let mut weekdays = BTreeMap::new();
    if q.starts_with('{') {
        let raw: BTreeMap<String, ColumnSetting> = serde_json::from_str(q).map_err(|e| {
            bad(format!(
                "must be name:type pairs or a JSON object of types (or of {{\"type\": \"date\", \"order\": \"dmy\"}}): {e}"
            ))
        })?;
        for (n, setting) in raw {
            let (kind, order, weekday) = match setting {
                ColumnSetting::Type(t) => (t, None, None),
                ColumnSetting::Options(o) => (o.kind, o.order, o.weekday),
            };
            let kind = column_type(&n, &kind)?;
            if let Some(w) = weekday {
                if kind != ColumnType::Date {
                    return Err(Error::invalid(
                        format!(
                            "/columns/{}/weekday",
                            crate::nn::portable::tabular::pointer_token(&n)
                        ),
                        "weekday is for a column typed \"date\"",
                    ));
                }
                weekdays.insert(n.clone(), w);
            }
            if let Some(o) = order {
                let at = format!(
                    "/columns/{}/order",
                    crate::nn::portable::tabular::pointer_token(&n)
                );
                if kind != ColumnType::Date {
                    return Err(Error::invalid(
                        at,
                        "an order is for a column typed \"date\"",
                    ));
                }
                let o = DateOrder::parse(&o).ok_or_else(|| {
                    Error::invalid(
                        at,
                        format!("unknown date order {o:?}; expected ymd, mdy or dmy"),
                    )
                })?;
                orders.insert(n.clone(), o);
            }
            types.insert(n, kind);
        }
        return Ok((types, orders, weekdays));
    }
    for pair in q.split(',').filter(|p| !p.trim().is_empty()) {
        let Some((name, kind)) = pair.rsplit_once(':') else {
            return Err(bad(format!(
                "{pair:?} is not name:type; for example area_code:categorical,customer_id:ignore"
            )));
        };
        types.insert(
            name.trim().to_owned(),
            column_type(name.trim(), kind.trim())?,
        );
    }
    Ok((types, orders, weekdays))
}

fn column_type(name: &str, kind: &str) -> Result<ColumnType> {
    ColumnType::parse(kind).ok_or_else(|| {
        Error::invalid(
            format!(
                "/columns/{}",
                crate::nn::portable::tabular::pointer_token(name)
            ),
            format!(
                "unknown column type {kind:?} for {name:?}; expected one of {}",
                ColumnType::ALL.join(", ")
            ),
        )
    })
}

/// Refuses a task the target cannot serve: classes need labels or whole numbers, a
/// regression needs numbers.
pub fn check_task(
    task: crate::nn::run::spec::Task,
    target: &crate::nn::run::spec::TargetShape,
) -> Result<()> {
    use crate::nn::run::spec::{TargetShape, Task};
    match (task, target) {
        (
            Task::Classification,
            TargetShape::Values {
                width: 1,
                integer_classes: None,
                ..
            },
        ) => Err(Error::invalid(
            "/task",
            "the target holds numbers that are not all whole (or too many distinct ones to be classes), so it cannot be a classification",
        )),
        (Task::Classification, TargetShape::Values { width, .. }) if *width > 1 => {
            Err(Error::invalid(
                "/task",
                format!(
                    "the target has {width} columns; a classification takes one column of labels"
                ),
            ))
        }
        (Task::Regression, TargetShape::Labels { .. }) => Err(Error::invalid(
            "/task",
            "the target holds text labels, so it cannot be a regression",
        )),
        _ => Ok(()),
    }
}

/// The fewest rows with a target a dataset may have: one row cannot be split, scaled or
/// learned from.
pub const MIN_ROWS: usize = 2;

/// Refuses a dataset without a target (uploaded with `?labels=none`) where one is needed
/// (training, evaluating), at `pointer`.
pub fn require_target(target: &crate::nn::run::spec::TargetShape, pointer: &str) -> Result<()> {
    match target {
        crate::nn::run::spec::TargetShape::Values { width: 0, .. } => Err(no_target(pointer)),
        _ => Ok(()),
    }
}

/// The refusal of a dataset without a target, at `pointer`.
pub fn no_target(pointer: &str) -> Error {
    Error::invalid(
        pointer,
        "the dataset has no target (it was uploaded with labels=none): it can be scored with POST /v1/models/{id}/predictions, not trained or evaluated on",
    )
}

/// Refuses a dataset with fewer than [`MIN_ROWS`] usable rows (rows whose target is missing
/// are dropped before this), at `pointer` (`/rows`, or the target column's).
pub fn check_min_rows(rows: usize, dropped_rows: u64, pointer: &str) -> Result<()> {
    if rows < MIN_ROWS {
        let dropped = if dropped_rows > 0 {
            format!(" ({dropped_rows} rows without a target were dropped)")
        } else {
            String::new()
        };
        return Err(Error::invalid(
            pointer,
            format!(
                "a dataset needs at least {MIN_ROWS} rows with a target to train on; this one has {rows}{dropped}"
            ),
        ));
    }
    Ok(())
}

impl Service {
    /// A stream for a CSV upload of `tenant` to be written as it arrives: the sink for the
    /// reader's thread, and the stream that [`upload_dataset`](Self::upload_dataset) commits
    /// (or gives up). For uploads without an `Idempotency-Key` (whose record id is chosen now).
    pub fn stream_dataset(&self, tenant: &str) -> (RowSink, DatasetStream) {
        let id = Uuid::new_v4();
        // A piece's rows come as one part per chunk of it (see `data::CsvStream::take_rows`):
        // room for about two pieces.
        let (rows, rows_rx) = tokio::sync::mpsc::channel(16);
        let (end, end_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(write_streamed(
            self.store.clone(),
            id,
            tenant.to_owned(),
            rows_rx,
            end_rx,
        ));
        (RowSink(rows), DatasetStream { id, end, task })
    }

    /// Reads and stores an upload for `tenant`. A keyed request whose first attempt stored the
    /// dataset but died before answering gets that dataset back.
    pub async fn upload_dataset(
        &self,
        tenant: &str,
        key: &IdempotencyKey,
        upload: Upload,
    ) -> Result<DatasetRecord> {
        let id = match self
            .store
            .get_dataset(key.record_id(tenant, "dataset"))
            .await?
        {
            // Stored by this key's first request, which died before answering.
            Some(d) if key.is_retry_of(d.created_at) => return Ok(d),
            Some(_) => Uuid::new_v4(),
            None => key.record_id(tenant, "dataset"),
        };
        let Upload {
            media_type,
            name,
            target,
            columns_given,
            na_values_given,
            task,
            no_target,
            body,
        } = upload;
        let limits = self.limits.data;
        let mut stream = None;
        let (name, ds) = match body {
            UploadBody::Csv(parsed, streamed) => {
                stream = streamed;
                let ds = (*parsed).map_err(|e| {
                    // A `?target=` that names no column is the query's fault, not the file's:
                    // invalid at the parameter, as for JSON uploads.
                    if e.row.is_none() && e.column.is_some() && e.column == target {
                        Error::invalid("/target", e.message)
                    } else if e.row.is_none() && e.column.is_some() && !e.too_large {
                        // About a whole column (empty, a type that cannot apply): at it.
                        let column = e.column.clone().unwrap_or_default();
                        Error::invalid(
                            format!(
                                "/columns/{}",
                                crate::nn::portable::tabular::pointer_token(&column)
                            ),
                            e.message,
                        )
                    } else {
                        e.into()
                    }
                })?;
                check_min_rows(ds.rows(), ds.dropped_rows, "/rows")?;
                (name.unwrap_or_else(|| "dataset".into()), ds)
            }
            UploadBody::Bytes(body) if matches!(media_type.as_str(), "application/json" | "") => {
                if target.is_some() {
                    return Err(Error::invalid(
                        "/target",
                        "the target query parameter is for CSV uploads",
                    ));
                }
                for (param, given) in [("/columns", columns_given), ("/na_values", na_values_given)]
                {
                    if given {
                        return Err(Error::invalid(
                            param,
                            "this query parameter is for CSV uploads; a JSON body gives it as a field",
                        ));
                    }
                }
                // Reading a large body is CPU work: off the async threads, like CSV.
                let (given, ds) = tokio::task::spawn_blocking(move || -> Result<_> {
                    let body: JsonDataset = data::json::read_within(&limits, || parse_json(&body))
                        .map_err(super::read::over_limit_as_too_large)?;
                    Ok((
                        body.name.clone(),
                        data::json_columns(&body, &limits, no_target)?,
                    ))
                })
                .await??;
                let name = name.or(given).unwrap_or_else(|| "dataset".into());
                check_min_rows(ds.rows(), ds.dropped_rows, "/rows")?;
                (name, ds)
            }
            UploadBody::Bytes(_) => {
                return Err(Error::unreadable(format!(
                    "unsupported content type \"{media_type}\"; send text/csv (or text/tab-separated-values), application/json, application/x-ndjson or application/vnd.apache.parquet"
                )));
            }
        };
        if name.trim().is_empty() || name.len() > 200 {
            return Err(Error::invalid("/name", "must be 1 to 200 characters"));
        }
        let mut ds = ds;
        if let (Some(_), true) = (task, no_target) {
            return Err(Error::invalid(
                "/task",
                "labels=none says the dataset has no target, so it has no task",
            ));
        }
        if let Some(t) = task {
            check_task(t, &ds.summary().target)?;
            ds.task = Some(t);
        }
        let rec = match stream {
            Some(stream) if !key.is_keyed() => {
                self.store_streamed(tenant, name, ds, stream).await?
            }
            other => {
                if let Some(stream) = other {
                    stream.give_up().await;
                }
                self.store_dataset(tenant, id, name, ds).await?
            }
        };
        crate::crash::point("dataset_ack");
        Ok(rec)
    }

    /// What validation needs of a stored dataset: from its metadata, or (datasets stored
    /// before tabular uploads kept it there) by decoding it once.
    pub async fn dataset_summary(&self, d: &DatasetRecord) -> Result<Summary> {
        if let Some(schema) = d.meta.get("schema")
            && let Ok(summary) = serde_json::from_value::<Summary>(schema.clone())
        {
            return Ok(summary);
        }
        let blob = self
            .store
            .dataset_data(d.id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no dataset {}", d.id)))?;
        tokio::task::spawn_blocking(move || Dataset::from_bytes(&blob).map(|ds| Summary::of(&ds)))
            .await?
            .map_err(Error::Internal)
    }

    /// Stores a parsed dataset under `id`, within the tenant's quota, and returns its record.
    pub async fn store_dataset(
        &self,
        tenant: &str,
        id: Uuid,
        name: String,
        ds: Columns,
    ) -> Result<DatasetRecord> {
        let started = std::time::Instant::now();
        let (ds, rec) = new_record(tenant, id, name, ds).await?;
        self.store_parts(ds, rec, started).await
    }

    /// Stores a CSV upload whose rows `stream` wrote as it arrived, under the stream's id: the
    /// record commits them. When they were not all written (the file did not stream, or the
    /// stream was given up), the upload is written whole, as any other.
    async fn store_streamed(
        &self,
        tenant: &str,
        name: String,
        ds: Columns,
        stream: DatasetStream,
    ) -> Result<DatasetRecord> {
        let started = std::time::Instant::now();
        let (ds, mut rec) = new_record(tenant, stream.id, name, ds).await?;
        if !ds.streamed() {
            stream.give_up().await;
            return self.store_parts(ds, rec, started).await;
        }
        let (ds, head, tail) = tokio::task::spawn_blocking(move || {
            let (head, tail) = ds.stored_ends();
            (ds, head, tail)
        })
        .await?;
        let rows_bytes = 4 * ds.rows() * ds.inputs();
        let len = head.len() + rows_bytes + tail.len();
        if let Err(e) = self.check_bytes_quota(tenant, len).await {
            stream.give_up().await;
            return Err(e);
        }
        rec.size_bytes = len as i64;
        let end = StreamEnd {
            record: rec.clone(),
            head,
            tail,
        };
        let prepared = started.elapsed();
        let committed = match stream.end.send(end) {
            Ok(()) => stream.task.await??,
            // Given up already: nothing of it stays.
            Err(_) => stream.task.await?.map(|_| false)?,
        };
        if !committed {
            return self.store_parts(ds, rec, started).await;
        }
        tracing::info!(
            dataset_id = %rec.id,
            bytes = rec.size_bytes,
            prepared_ms = prepared.as_millis() as u64,
            stored_ms = started.elapsed().as_millis() as u64,
            streamed = true,
            "dataset stored"
        );
        Ok(rec)
    }

    /// Writes a dataset's stored form, made from its columns a part at a time, with its record.
    async fn store_parts(
        &self,
        ds: Columns,
        mut rec: DatasetRecord,
        started: std::time::Instant,
    ) -> Result<DatasetRecord> {
        let tenant = rec.tenant.clone();
        let tenant = tenant.as_str();
        let parts = ds.into_stored_parts();
        rec.size_bytes = parts.len() as i64;
        self.check_bytes_quota(tenant, parts.len()).await?;
        let prepared = started.elapsed();
        // The parts' rows are assembled on a blocking thread a few parts ahead of the store,
        // which writes the ones before meanwhile. Should the store stop (a duplicate, an
        // outage), the channel closes and the assembling stops with it.
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
        let assembling = tokio::task::spawn_blocking(move || {
            for part in parts {
                if tx.blocking_send(part).is_err() {
                    break;
                }
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|part| (part, rx))
        });
        let inserted = self
            .store
            .insert_dataset_parts(&rec, Box::pin(stream))
            .await;
        assembling.await?;
        // The upload's buffers are free again: give the memory back rather than keep it.
        crate::data::release_memory();
        match inserted {
            Ok(()) => {
                tracing::info!(
                    dataset_id = %rec.id,
                    bytes = rec.size_bytes,
                    prepared_ms = prepared.as_millis() as u64,
                    stored_ms = started.elapsed().as_millis() as u64,
                    "dataset stored"
                );
                Ok(rec)
            }
            // The same request under the same Idempotency-Key (`IdempotencyKey::begin` saw to
            // that) stored it a moment earlier: its dataset is this request's answer too.
            Err(StoreError::Duplicate(_)) => match self.store.get_dataset(rec.id).await? {
                Some(d) if d.tenant == tenant => Ok(d),
                _ => Err(StoreError::Duplicate(String::new()).into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// The tenant's dataset `id`; another tenant's is "not found" too.
    pub async fn dataset_record(&self, tenant: &str, id: Uuid) -> Result<DatasetRecord> {
        match self.store.get_dataset(id).await? {
            Some(d) if d.tenant == tenant => Ok(d),
            _ => Err(Error::NotFound(format!("no dataset {id}"))),
        }
    }

    /// The tenant's dataset `id` with its data, decoded on a blocking thread.
    pub async fn dataset(&self, tenant: &str, id: Uuid) -> Result<(DatasetRecord, Dataset)> {
        let d = self.dataset_record(tenant, id).await?;
        let blob = self
            .store
            .dataset_data(d.id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no dataset {}", d.id)))?;
        let ds = tokio::task::spawn_blocking(move || Dataset::from_bytes(&blob))
            .await?
            .map_err(Error::Internal)?;
        Ok((d, ds))
    }

    pub async fn list_datasets(
        &self,
        tenant: &str,
        cursor: Option<Cursor>,
        limit: i64,
    ) -> Result<Page<DatasetRecord>> {
        Ok(self.store.list_datasets(tenant, cursor, limit).await?)
    }

    /// Deletes the tenant's dataset `id`, unless queued or running jobs use it: deleting it
    /// under them would fail them (a running job could not resume from its checkpoint), so
    /// the answer is a conflict naming them — cancel them or wait for them to end.
    pub async fn delete_dataset(&self, tenant: &str, id: Uuid) -> Result<()> {
        let d = self.dataset_record(tenant, id).await?;
        if self.store.delete_dataset(d.id).await? {
            crate::crash::point("delete_ack");
            return Ok(());
        }
        let sweeps = self.store.sweeps_using_dataset(d.id, 10).await?;
        if !sweeps.is_empty() {
            let ids = sweeps
                .iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(Error::Conflict(format!(
                "dataset {} is used by unfinished sweeps ({ids}); cancel them or wait until they end, then delete it",
                d.id
            )));
        }
        let users = self.store.jobs_using_dataset(d.id, 10).await?;
        if users.is_empty() {
            return match self.store.get_dataset(d.id).await? {
                // A job started and ended between the two statements: try once more.
                Some(_) if self.store.delete_dataset(d.id).await? => Ok(()),
                Some(_) => Err(Error::Conflict(format!(
                    "dataset {} is in use by a job; retry when it has ended",
                    d.id
                ))),
                None => Err(Error::NotFound(format!("no dataset {}", d.id))),
            };
        }
        let ids = users
            .iter()
            .map(|u| u.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Err(Error::Conflict(format!(
            "dataset {} is used by queued or running jobs ({ids}); cancel them or wait until they end, then delete it",
            d.id
        )))
    }
}
