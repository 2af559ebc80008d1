//! Property tests of every reader of outside input: the multi-task
//! annotation file, the per-task folders, the config loader and `--set`,
//! safetensors checkpoints and feature files, and the image decoder. Each
//! gets arbitrary bytes and near-valid inputs (a valid file with fields,
//! bytes or header claims changed) and must return a value or an error: never
//! panic, never take seconds, and never make one allocation much larger than
//! what it was given (a header claiming gigabytes is refused, not believed).
//!
//! A counting allocator records the largest single allocation of the test's
//! own thread, so the bound is checked, not assumed. Cases are sized so each
//! property takes a few seconds on two cores.

use mtaffect::data::image::{decode_rgb_bytes, MAX_IMAGE_SIDE};
use mtaffect::data::{
    read_affwild_tasks, read_mtl_annotations, LabelSet, OnBadSample, ReadOptions, Sample, Split,
};
use mtaffect::train::checkpoint;
use mtaffect::train::gan::GanConfig;
use mtaffect::train::temporal::TemporalConfig;
use mtaffect::train::{ConfigFile, TrainConfig};
use mtaffect::{tensor_file, DType, Params, Tensor};
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// The system allocator, noting the largest request of each thread.
struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // try_with: the slot is gone while a thread is being torn down.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: every call is forwarded unchanged to `System`.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Slowest a single case may be: parsing a few kilobytes takes microseconds,
/// so this only trips on a loop that runs away.
const CASE_TIME: Duration = Duration::from_secs(2);

/// Runs `f`, failing the case when it takes longer than [`CASE_TIME`] or when
/// one allocation on this thread exceeds `max_alloc` bytes.
fn bounded<T>(what: &str, max_alloc: usize, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    LARGEST.with(|l| l.set(0));
    let start = Instant::now();
    let out = f();
    let (took, largest) = (start.elapsed(), LARGEST.with(Cell::get));
    prop_assert!(took < CASE_TIME, "{what}: took {took:?}");
    prop_assert!(
        largest <= max_alloc,
        "{what}: one allocation of {largest} bytes (bound {max_alloc})"
    );
    Ok(out)
}

/// Allowance for a reader given `n` bytes: a few copies of the input plus
/// fixed overhead (buffers, error strings).
fn text_bound(n: usize) -> usize {
    16 * n + (1 << 20)
}

fn config(cases: u32) -> Config {
    Config {
        // Failures are reproduced by the regression tests beside the fixes,
        // not by files written into the tree.
        failure_persistence: None,
        ..Config::with_cases(cases)
    }
}

/// One of `v`, as an owned string.
fn strings(v: &[&'static str]) -> BoxedStrategy<String> {
    prop::sample::select(v.to_vec())
        .prop_map(String::from)
        .boxed()
}

/// One of `edges`, a short printable string, or any string at all.
fn edge_or_any(edges: &[&'static str]) -> BoxedStrategy<String> {
    prop_oneof![strings(edges), "[ -~]{0,16}", any::<String>()].boxed()
}

/// Fields that sit on the edge of what the label parsers accept.
fn field() -> BoxedStrategy<String> {
    edge_or_any(&[
        "",
        "-5",
        "-1",
        "0",
        "1",
        "7",
        "8",
        "-0",
        "0.5",
        "-1.0",
        "1.0000001",
        "NaN",
        "inf",
        "-inf",
        "1e40",
        "+1",
        " 1 ",
        "99999999999999999999",
        "-9223372036854775809",
        "v/00001.jpg",
        "v/4294967296.jpg",
        "/00001.jpg",
        "v/.jpg",
        "v/1.png",
        "é/1.jpg",
        "\u{feff}1",
        "\"1\"",
    ])
}

/// A line of `n` such fields, usually near the right count.
fn line(n: usize) -> BoxedStrategy<String> {
    prop::collection::vec(field(), n.saturating_sub(2)..n + 3)
        .prop_map(|f| f.join(","))
        .boxed()
}

fn va() -> BoxedStrategy<String> {
    strings(&["-5", "0.5", "-1", "1", "0", "-0.25"])
}

fn expr(ls: LabelSet) -> BoxedStrategy<String> {
    (-1..ls.num_expressions() as i32)
        .prop_map(|v| v.to_string())
        .boxed()
}

fn aus(ls: LabelSet) -> BoxedStrategy<Vec<String>> {
    let n = ls.num_aus();
    prop_oneof![
        Just(vec!["-1".to_string(); n]),
        prop::collection::vec(strings(&["0", "1"]), n),
    ]
    .boxed()
}

/// A valid line (from `fields`) with at most one field replaced by an edge
/// case: most lines are accepted, so the accepting paths run too.
fn near_valid(fields: BoxedStrategy<Vec<String>>) -> BoxedStrategy<String> {
    let damage = prop::option::of((any::<prop::sample::Index>(), field()));
    (fields, damage)
        .prop_map(|(mut f, damage)| {
            if let Some((i, v)) = damage {
                let i = i.index(f.len());
                f[i] = v;
            }
            f.join(",")
        })
        .boxed()
}

/// A multi-task file line with a frame name, VA pair, expression and AUs.
fn mtl_line(ls: LabelSet) -> BoxedStrategy<String> {
    let name = strings(&[
        "v/00001.jpg",
        "v/00000.jpg",
        "a_left/00042.png",
        "v/4294967295.jpg",
    ]);
    let fields = (name, va(), va(), expr(ls), aus(ls)).prop_map(|(n, v, a, e, mut au)| {
        au.splice(0..0, [n, v, a, e]);
        au
    });
    near_valid(fields.boxed())
}

/// File text: arbitrary bytes, or a header (the right one or not) and lines,
/// each near-valid (from `good`) or a random `fields`-field line.
fn annotation_text(
    header: String,
    fields: usize,
    good: BoxedStrategy<String>,
) -> impl Strategy<Value = Vec<u8>> {
    let row = prop_oneof![3 => good, 1 => line(fields)];
    let lines = (
        prop_oneof![4 => Just(header), 1 => line(fields)],
        prop::collection::vec(row, 0..12),
        prop::sample::select(vec!["\n", "\r\n"]),
    )
        .prop_map(|(h, rest, nl)| {
            std::iter::once(h)
                .chain(rest)
                .collect::<Vec<_>>()
                .join(nl)
                .into_bytes()
        });
    prop_oneof![1 => prop::collection::vec(any::<u8>(), 0..256), 4 => lines]
}

fn mtl_header(ls: LabelSet) -> String {
    format!(
        "image,valence,arousal,expression,{}",
        ls.au_names().join(",")
    )
}

fn label_set() -> impl Strategy<Value = LabelSet> {
    prop::sample::select(vec![LabelSet::Abaw2022, LabelSet::Abaw2020])
}

fn on_bad() -> impl Strategy<Value = OnBadSample> {
    prop::sample::select(vec![OnBadSample::Fail, OnBadSample::Skip])
}

/// What every accepted sample must satisfy, whichever reader made it.
fn check_sample(s: &Sample, ls: LabelSet) -> Result<(), TestCaseError> {
    if let Some(va) = s.va {
        prop_assert!(va.iter().all(|v| (-1.0..=1.0).contains(v)), "{s:?}");
    }
    if let Some(e) = s.expr {
        prop_assert!((e as usize) < ls.num_expressions(), "{s:?}");
    }
    if let Some(a) = &s.aus {
        prop_assert!(
            a.len() == ls.num_aus() && a.iter().all(|&v| v <= 1),
            "{s:?}"
        );
    }
    prop_assert!(s.has_any_label(), "{s:?}");
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn the_multi_task_file_reader_returns_samples_or_an_error(
        (ls, text, on_bad_sample) in label_set().prop_flat_map(|ls| {
            let text = annotation_text(mtl_header(ls), 4 + ls.num_aus(), mtl_line(ls));
            (Just(ls), text, on_bad())
        })
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("training_set_annotations.txt");
        std::fs::write(&path, &text).unwrap();
        let opts = ReadOptions { label_set: ls, on_bad_sample, image_root: None };
        let read = bounded("read_mtl_annotations", text_bound(text.len()), || {
            read_mtl_annotations(&path, &opts)
        })?;
        if let Ok((samples, summary)) = read {
            prop_assert_eq!(summary.samples, samples.len());
            for s in &samples {
                check_sample(s, ls)?;
            }
        }
    }

    #[test]
    fn the_per_task_folder_reader_returns_samples_or_an_error(
        (ls, files, on_bad_sample) in label_set().prop_flat_map(|ls| {
            let tasks = [
                ("VA_Estimation_Challenge", "valence,arousal".to_string(), 2,
                    (va(), va()).prop_map(|(v, a)| vec![v, a]).boxed()),
                ("EXPR_Classification_Challenge", ls.expression_names().join(","), 1,
                    expr(ls).prop_map(|e| vec![e]).boxed()),
                ("AU_Detection_Challenge", ls.au_names().join(","), ls.num_aus(), aus(ls)),
            ];
            let task = prop::sample::select(tasks.to_vec());
            let file = (task, "[a-z0-9_]{1,8}").prop_flat_map(|((dir, header, n, good), video)| {
                (Just(dir), Just(video), annotation_text(header, n, near_valid(good)))
            });
            (Just(ls), prop::collection::vec(file, 1..4), on_bad())
        })
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut total = 0;
        for (task, video, text) in &files {
            let d = dir.path().join(task).join("Train_Set");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(format!("{video}.txt")), text).unwrap();
            total += text.len();
        }
        let opts = ReadOptions { label_set: ls, on_bad_sample, image_root: None };
        let read = bounded("read_affwild_tasks", text_bound(total), || {
            read_affwild_tasks(dir.path(), Split::Train, &opts)
        })?;
        if let Ok((samples, _)) = read {
            for s in &samples {
                check_sample(s, ls)?;
                prop_assert!(files.iter().any(|(_, v, _)| *v == s.video), "{s:?}");
            }
        }
    }
}

/// Keys of every section the three run configs have, and values of every
/// TOML type and edge, for `--set` and for generated files.
fn config_key() -> impl Strategy<Value = String> {
    let section = prop::sample::select(vec![
        "model", "data", "train", "run", "schedule", "loss", "optim", "gan", "gan_mix", "", "x.y",
    ]);
    let key = prop::sample::select(vec![
        "depth",
        "width_mult",
        "stem",
        "image_size",
        "batch_size",
        "workers",
        "steps",
        "eval_every",
        "log_every",
        "device",
        "precision",
        "seed",
        "base_lr",
        "decay",
        "warmup_steps",
        "kind",
        "total_steps",
        "name",
        "runs_dir",
        "source",
        "label_set",
        "on_bad_sample",
        "n_aus",
        "n_expr",
        "dropout",
        "encoder",
        "features",
        "max_norm",
        "",
    ]);
    prop_oneof![
        (section, key).prop_map(|(s, k)| if s.is_empty() {
            k.to_string()
        } else {
            format!("{s}.{k}")
        }),
        "[a-z_.]{0,20}",
    ]
}

fn config_value() -> BoxedStrategy<String> {
    edge_or_any(&[
        "0",
        "1",
        "-1",
        "2",
        "16",
        "18",
        "1e308",
        "-1e308",
        "nan",
        "inf",
        "-inf",
        "0.0",
        "18446744073709551615",
        "9223372036854775807",
        "-9223372036854775808",
        "4294967296",
        "true",
        "\"cpu\"",
        "\"cuda:99999999999\"",
        "\"\"",
        "[]",
        "[1, \"a\"]",
        "{}",
        "{kind=\"cosine\",total_steps=0,min_lr=1}",
        "{kind=\"step\"}",
        "1979-05-27",
        "\"bf16\"",
        "\"skip\"",
        "\"abaw2020\"",
        "\"synthetic\"",
        "1\n[model]\ndepth = 50",
    ])
}

fn config_text() -> impl Strategy<Value = String> {
    let assignment = (config_key(), config_value()).prop_map(|(k, v)| match k.rsplit_once('.') {
        Some((s, k)) => format!("[{s}]\n{k} = {v}"),
        None => format!("{k} = {v}"),
    });
    prop_oneof![
        prop::collection::vec(assignment, 0..6).prop_map(|l| l.join("\n")),
        any::<String>(),
        "[\\[\\]a-z0-9=\"., \n{}_-]{0,80}",
    ]
}

fn sets() -> impl Strategy<Value = Vec<String>> {
    let set = prop_oneof![
        (config_key(), config_value()).prop_map(|(k, v)| format!("{k}={v}")),
        any::<String>(),
    ];
    prop::collection::vec(set, 0..4)
}

/// `from_toml` and `with_overrides` on one config type: a value that comes
/// back passes `validate` and survives its own TOML round trip.
fn check_config<C: ConfigFile + Default + std::fmt::Debug>(
    text: &str,
    sets: &[String],
) -> Result<(), TestCaseError> {
    let bound = text_bound(text.len() + sets.iter().map(String::len).sum::<usize>());
    let parsed = bounded("from_toml", bound, || C::from_toml(text, "fuzz.toml"))?;
    let overridden = bounded("with_overrides", bound, || {
        C::default().with_overrides(sets)
    })?;
    for c in [parsed, overridden].into_iter().flatten() {
        prop_assert!(c.validate().is_ok(), "{c:?}");
        let again = C::from_toml(&c.to_toml(), "round trip");
        prop_assert!(again.is_ok(), "{c:?} does not read back: {again:?}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn the_frame_config_parses_or_names_the_error(text in config_text(), sets in sets()) {
        check_config::<TrainConfig>(&text, &sets)?;
    }

    #[test]
    fn the_temporal_config_parses_or_names_the_error(text in config_text(), sets in sets()) {
        check_config::<TemporalConfig>(&text, &sets)?;
    }

    #[test]
    fn the_gan_config_parses_or_names_the_error(text in config_text(), sets in sets()) {
        check_config::<GanConfig>(&text, &sets)?;
    }
}

/// The model the fuzzed checkpoints are loaded into.
fn small_model() -> (Params, BTreeMap<String, Tensor>) {
    let mut p = Params::new();
    p.add("fc.weight", Tensor::ones([3, 2], DType::F32))
        .unwrap();
    p.add("fc.bias", Tensor::zeros([3], DType::F32)).unwrap();
    let buffers = BTreeMap::from([("bn.running_var".to_string(), Tensor::ones([2], DType::F32))]);
    (p, buffers)
}

/// A valid checkpoint of [`small_model`] with one Adam moment, as bytes.
fn valid_checkpoint() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.safetensors");
    let (params, buffers) = small_model();
    let optimizer = BTreeMap::from([("m.0".to_string(), Tensor::zeros([3, 2], DType::F32))]);
    let ck = checkpoint::CheckpointRef {
        params: &params,
        optimizer: &optimizer,
        buffers: &buffers,
        progress: mtaffect::train::TrainProgress::start(),
        config_toml: "[train]\nsteps = 1\n",
    };
    checkpoint::save(&path, &ck).unwrap();
    std::fs::read(&path).unwrap()
}

/// A valid file's bytes with some of them changed: single bytes, the
/// header's 8-byte length, a cut, or digits in the JSON header swapped for
/// huge ones (shapes and offsets that claim far more than the file holds).
fn mutated(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let n = valid.len();
    let edits = prop::collection::vec((0..n, any::<u8>()), 0..6);
    let cut = prop_oneof![Just(n), 0..n];
    let length = prop_oneof![Just(None), any::<u64>().prop_map(Some)];
    let huge = prop::sample::select(vec![
        None,
        Some("4294967296"),
        Some("18446744073709551615"),
        Some("99999999999999999999"),
        Some("0"),
    ]);
    (edits, cut, length, huge, any::<prop::sample::Index>()).prop_map(
        move |(edits, cut, length, huge, at)| {
            let mut b = valid.clone();
            if let Some(h) = huge {
                b = replace_a_number(&b, h, at);
            }
            for (i, v) in edits {
                if i < b.len() {
                    b[i] = v;
                }
            }
            if let Some(l) = length {
                b[..8].copy_from_slice(&l.to_le_bytes());
            }
            b.truncate(cut);
            b
        },
    )
}

/// `bytes` with one run of ASCII digits in the safetensors JSON header
/// (picked by `at`) replaced by `with`, and the header length fixed up.
fn replace_a_number(bytes: &[u8], with: &str, at: prop::sample::Index) -> Vec<u8> {
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + len]).unwrap();
    let runs: Vec<(usize, usize)> = header
        .char_indices()
        .filter(|&(i, c)| {
            c.is_ascii_digit() && !header[..i].ends_with(|c: char| c.is_ascii_digit())
        })
        .map(|(i, _)| {
            (
                i,
                i + header[i..]
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(header.len() - i),
            )
        })
        .collect();
    let (s, e) = runs[at.index(runs.len())];
    let header = format!("{}{with}{}", &header[..s], &header[e..]);
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&bytes[8 + len..]);
    out
}

fn checkpoint_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..128),
        mutated(valid_checkpoint()),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn a_checkpoint_file_loads_or_is_refused(bytes in checkpoint_bytes()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        let bound = text_bound(bytes.len());
        let (mut params, mut buffers) = small_model();
        bounded("tensor_file::read", bound, || tensor_file::read(&path, "checkpoint"))?.ok();
        bounded("checkpoint::read_config", bound, || checkpoint::read_config(&path))?.ok();
        let loaded = bounded("checkpoint::load", bound, || {
            checkpoint::load(&path, &mut params, &mut buffers)
        })?;
        if loaded.is_ok() {
            let (want, _) = small_model();
            for id in params.ids() {
                prop_assert_eq!(params.get(id).dims(), want.get(id).dims());
            }
        }
    }
}

fn encoded(format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(9, 7, |x, y| image::Rgb([x as u8 * 20, y as u8 * 30, 99]));
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, format).unwrap();
    buf.into_inner()
}

/// A PNG whose header claims `w` x `h` pixels, followed by an empty
/// compressed data chunk.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut b = Vec::new();
    let mut e = png::Encoder::new(&mut b, w, h);
    e.set_color(png::ColorType::Rgb);
    let mut writer = e.write_header().unwrap();
    // zlib's encoding of nothing.
    let empty = [0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01];
    writer.write_chunk(png::chunk::IDAT, &empty).unwrap();
    // It ends without the IEND chunk: the pixel data are short anyway.
    drop(writer);
    b
}

/// A small valid JPEG or PNG with bytes changed, the JPEG's frame size
/// rewritten (two big-endian u16 after the SOF0 marker's length and
/// precision), a PNG header (checksum intact) claiming any size, or arbitrary
/// bytes behind a magic number; each possibly cut short.
fn image_bytes() -> impl Strategy<Value = Vec<u8>> {
    let jpeg = encoded(image::ImageFormat::Jpeg);
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap() + 5;
    let claims = prop_oneof![
        Just(None),
        (1u16..=u16::MAX, 1u16..=u16::MAX).prop_map(Some),
        (1u16..=64, 1u16..=64).prop_map(Some),
    ];
    let jpeg = (Just(jpeg), claims).prop_map(move |(mut b, dims)| {
        if let Some((w, h)) = dims {
            b[sof..sof + 2].copy_from_slice(&h.to_be_bytes());
            b[sof + 2..sof + 4].copy_from_slice(&w.to_be_bytes());
        }
        b
    });
    let png = (1u32..=1 << 20, 1u32..=1 << 20).prop_map(|(w, h)| png_claiming(w, h));
    let magic = prop::sample::select(vec![
        b"\xFF\xD8\xFF".to_vec(),
        b"\x89PNG\r\n\x1a\n".to_vec(),
        Vec::new(),
    ]);
    let magic = (magic, prop::collection::vec(any::<u8>(), 0..256)).prop_map(|(mut m, rest)| {
        m.extend(rest);
        m
    });
    prop_oneof![jpeg, Just(encoded(image::ImageFormat::Png)), png, magic].prop_flat_map(|b| {
        let n = b.len();
        (
            Just(b),
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
            prop_oneof![3 => Just(n), 1 => 0..=n],
        )
            .prop_map(|(mut b, edits, cut)| {
                for (i, v) in edits {
                    if !b.is_empty() {
                        let i = i.index(b.len());
                        b[i] = v;
                    }
                }
                b.truncate(cut);
                b
            })
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn an_image_decodes_or_is_refused(bytes in image_bytes()) {
        // The largest image accepted, as RGBA (decoders may expand to four channels).
        let bound = text_bound(bytes.len()) + (MAX_IMAGE_SIDE as usize).pow(2) * 4;
        let img = bounded("decode_rgb_bytes", bound, || decode_rgb_bytes(&bytes))?;
        if let Ok(img) = img {
            prop_assert!(img.width() <= MAX_IMAGE_SIDE && img.height() <= MAX_IMAGE_SIDE);
            prop_assert_eq!(img.as_raw().len(), (img.width() * img.height() * 3) as usize);
        }
    }
}

/// A `--set` value with a line break parsed as the value plus keys of its
/// own, and those keys were dropped without a word; it is now one string, so
/// a number key refuses it.
#[test]
fn a_set_value_that_smuggles_in_more_keys_is_refused() {
    let e = TrainConfig::default()
        .with_overrides(&["train.steps=7\n[model]\ndepth = 50".to_string()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("steps"), "{e}");
}

/// The bound is checked, not assumed: one large allocation fails the case.
#[test]
fn an_allocation_over_the_bound_fails_the_case() {
    let big = bounded("vec", 1 << 20, || {
        std::hint::black_box(vec![1u8; 4 << 20]).len()
    });
    assert!(big.is_err());
    let small = bounded("vec", 1 << 20, || {
        std::hint::black_box(vec![1u8; 1 << 10]).len()
    });
    assert_eq!(small.unwrap(), 1 << 10);
}

/// A 100-byte PNG claiming 12000 x 12000 pixels made the decoder allocate
/// 432 MB before finding the data missing.
#[test]
fn a_header_claiming_a_huge_image_is_refused_before_decoding() {
    let bytes = png_claiming(12000, 12000);
    let e = bounded("decode_rgb_bytes", 1 << 20, || decode_rgb_bytes(&bytes))
        .unwrap()
        .unwrap_err()
        .0;
    assert!(e.contains("12000x12000") && e.contains("4096x4096"), "{e}");
}

/// The safetensors reader checks a header's offsets against the file's
/// length before it allocates anything for a tensor.
#[test]
fn a_safetensors_header_claiming_terabytes_is_refused_without_allocating_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.safetensors");
    let header =
        br#"{"w":{"dtype":"F32","shape":[274877906944],"data_offsets":[0,1099511627776]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0; 16]);
    std::fs::write(&path, &bytes).unwrap();
    let read = bounded("tensor_file::read", text_bound(bytes.len()), || {
        tensor_file::read(Path::new(&path), "features")
    })
    .unwrap();
    let e = read.unwrap_err().to_string();
    assert!(
        e.contains("huge.safetensors") && e.contains("features"),
        "{e}"
    );
}
