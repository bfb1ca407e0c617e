//! Stage benchmarks: parse, validate and apply (fresh and re-import) alone, and the whole
//! pipeline end to end, on a generated export. Throughput is in records (a premise with
//! its account, or a client), so figures compare with `records/s` of the import summary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use crm_import::generate::{self, Spec};
use crm_import::layout::Layout;
use crm_import::model::{Parsed, Record, Validated};
use crm_import::parse::RecordReader;
use crm_import::pipeline::{self, Options};
use crm_import::report::RunReport;
use crm_import::store::{self, SqliteStore, Store};
use crm_import::validate::validate_chunk;

const PAIRS: u64 = 5_000;
const CHUNK: usize = 1_000;

fn export() -> Vec<u8> {
    let mut out = Vec::new();
    generate::write(
        Spec {
            premises: PAIRS,
            clients: PAIRS,
            seed: 1,
        },
        &mut out,
        |_| {},
    )
    .unwrap();
    out
}

fn parse_all(bytes: &[u8]) -> Vec<Parsed> {
    let mut reader = RecordReader::from_bytes(Arc::from("bench.xml"), &Layout::native(), bytes);
    let mut out = Vec::new();
    while let Some(record) = reader.read_record().unwrap() {
        out.push(record);
    }
    out
}

fn validated(bytes: &[u8]) -> Vec<Validated> {
    parse_all(bytes)
        .chunks(CHUNK)
        .flat_map(|c| validate_chunk(c.to_vec()))
        .collect()
}

async fn fresh_store(dir: &tempfile::TempDir, n: u32) -> SqliteStore {
    let url = format!(
        "sqlite:{}",
        dir.path().join(format!("bench-{n}.db")).display()
    );
    SqliteStore::open(&url, &store::Settings::default())
        .await
        .unwrap()
}

async fn apply_all(store: &SqliteStore, records: &[Validated]) {
    let scope = store.scope("uo-1", "src-1").await.unwrap();
    let mut held = store.hold();
    for chunk in records.chunks(CHUNK) {
        let refs: Vec<&Record> = chunk.iter().map(|v| v.body.as_ref().unwrap()).collect();
        let applied = store.apply_chunk(&scope, &refs, &mut held).await.unwrap();
        assert!(applied.refused.is_none());
    }
    store.commit(&mut held).await.unwrap();
}

fn stages(c: &mut Criterion) {
    let bytes = export();
    let records = PAIRS * 2;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("stages");
    group.throughput(Throughput::Elements(records));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));

    group.bench_function("parse", |b| b.iter(|| parse_all(&bytes)));
    let parsed = parse_all(&bytes);
    group.bench_function("validate", |b| {
        b.iter(|| {
            parsed
                .chunks(CHUNK)
                .map(|c| validate_chunk(c.to_vec()).len())
                .sum::<usize>()
        })
    });

    let valid = validated(&bytes);
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    group.bench_function(BenchmarkId::new("apply", "fresh"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    let store = fresh_store(&dir, n).await;
                    let start = Instant::now();
                    apply_all(&store, &valid).await;
                    total += start.elapsed();
                }
                total
            })
        })
    });
    let reimport = rt.block_on(async {
        let store = fresh_store(&dir, 0).await;
        apply_all(&store, &valid).await;
        store
    });
    group.bench_function(BenchmarkId::new("apply", "reimport"), |b| {
        b.to_async(&rt).iter(|| apply_all(&reimport, &valid))
    });

    let path = dir.path().join("bench.xml");
    std::fs::write(&path, &bytes).unwrap();
    let file = path.to_string_lossy().into_owned();
    group.bench_function("end_to_end", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    let store = fresh_store(&dir, n).await;
                    let scope = store.scope("uo-1", "src-1").await.unwrap();
                    let start = Instant::now();
                    let report: RunReport = pipeline::import_files(
                        &store,
                        &scope,
                        &crm_import::source::Files::local(std::slice::from_ref(&file)),
                        Options::default(),
                    )
                    .await;
                    total += start.elapsed();
                    assert!(report.is_ok());
                }
                total
            })
        })
    });
    group.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
