//! ABAW annotation formats: every label combination, every kind of bad input
//! (error names file, line and field; skip mode counts by reason), the
//! per-task merge, the legacy label set and the prediction writer.

use mtaffect::data::{
    read_affwild_tasks, read_mtl_annotations, write_predictions, BadReason, LabelSet, OnBadSample,
    Prediction, ReadOptions, Split,
};
use mtaffect::Error;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "mtaffect-test-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const HEADER: &str =
    "image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26";
const NO_AU: &str = "-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1";
const AUS: &str = "1,0,0,1,0,0,1,0,0,0,1,0";

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn every_label_combination_and_unlabelled_lines_dropped() {
    let dir = temp_dir("combos");
    let f = dir.join("training_set_annotations.txt");
    let lines = [
        format!("v1/00001.jpg,0.5,-0.25,-1,{NO_AU}"),    // VA
        format!("v1/00002.jpg,-5,-5,3,{NO_AU}"),         // EXPR
        format!("v1/00003.jpg,-5,-5,-1,{AUS}"),          // AU
        format!("v1/00004.jpg,0.1,0.2,4,{NO_AU}"),       // VA + EXPR
        format!("v1/00005.jpg,-1,1,-1,{AUS}"),           // VA + AU
        format!("v1/00006.jpg,-5,-5,7,{AUS}"),           // EXPR + AU
        format!("v2_left/00007.jpg,0.125,0.75,0,{AUS}"), // all three
        format!("v2_left/00008.jpg,-5,-5,-1,{NO_AU}"),   // none
    ];
    write(&f, &format!("{HEADER}\n{}\n", lines.join("\n")));
    let (s, summary) = read_mtl_annotations(&f, &ReadOptions::default()).unwrap();
    assert_eq!(summary.samples, 7);
    assert_eq!(summary.unlabelled, 1);
    assert_eq!(summary.total_skipped(), 0);
    let au = Some(vec![1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0]);
    let got: Vec<_> = s.iter().map(|s| (s.va, s.expr, s.aus.clone())).collect();
    assert_eq!(
        got,
        vec![
            (Some([0.5, -0.25]), None, None),
            (None, Some(3), None),
            (None, None, au.clone()),
            (Some([0.1, 0.2]), Some(4), None),
            (Some([-1.0, 1.0]), None, au.clone()),
            (None, Some(7), au.clone()),
            (Some([0.125, 0.75]), Some(0), au.clone()),
        ]
    );
    assert_eq!((s[6].video.as_str(), s[6].frame), ("v2_left", 7));
    assert_eq!(s[6].image, "v2_left/00007.jpg");
    assert_eq!(s[6].origin.line, 8);
}

/// (line, expected field, reason) for one bad line each.
fn bad_cases() -> Vec<(String, &'static str, BadReason)> {
    vec![
        (
            "v/00001.jpg,0.5,0.5,1".to_string(),
            "line",
            BadReason::FieldCount,
        ),
        (
            format!("v/00001.jpg,abc,0.5,1,{AUS}"),
            "valence",
            BadReason::NotANumber,
        ),
        (
            format!("v/00001.jpg,1.5,0.5,1,{AUS}"),
            "valence",
            BadReason::OutOfRange,
        ),
        (
            format!("v/00001.jpg,0.5,-1.01,1,{AUS}"),
            "arousal",
            BadReason::OutOfRange,
        ),
        (
            format!("v/00001.jpg,0.5,-5,1,{AUS}"),
            "arousal",
            BadReason::OutOfRange,
        ),
        (
            format!("v/00001.jpg,0.5,0.5,8,{AUS}"),
            "expression",
            BadReason::OutOfRange,
        ),
        (
            format!("v/00001.jpg,0.5,0.5,-2,{AUS}"),
            "expression",
            BadReason::OutOfRange,
        ),
        (
            format!("v/00001.jpg,0.5,0.5,x,{AUS}"),
            "expression",
            BadReason::NotANumber,
        ),
        (
            "v/00001.jpg,0.5,0.5,1,1,0,2,1,0,0,1,0,0,0,1,0".to_string(),
            "AU4",
            BadReason::OutOfRange,
        ),
        (
            "v/00001.jpg,0.5,0.5,1,1,0,0,1,0,0,1,0,0,0,1,0.5".to_string(),
            "AU26",
            BadReason::NotANumber,
        ),
        (
            "v/00001.jpg,0.5,0.5,1,1,-1,0,1,0,0,1,0,0,0,1,0".to_string(),
            "AU1",
            BadReason::OutOfRange,
        ),
        (
            format!("v/frame1.jpg,0.5,0.5,1,{AUS}"),
            "image",
            BadReason::BadImageName,
        ),
    ]
}

#[test]
fn each_bad_line_fails_naming_file_line_and_field() {
    let dir = temp_dir("bad");
    for (i, (bad, field, _)) in bad_cases().into_iter().enumerate() {
        let f = dir.join(format!("case{i}.txt"));
        write(&f, &format!("{HEADER}\nok/00001.jpg,0,0,0,{AUS}\n{bad}\n"));
        let err = read_mtl_annotations(&f, &ReadOptions::default()).unwrap_err();
        match &err {
            Error::Parse {
                file,
                line,
                field: fld,
                ..
            } => {
                assert_eq!(file, &f, "case {i}");
                assert_eq!(*line, 3, "case {i}: {err}");
                assert_eq!(fld, field, "case {i}: {err}");
            }
            other => panic!("case {i}: expected a parse error, got {other}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("case{i}.txt:3: field '{field}'")),
            "{msg}"
        );
    }
}

#[test]
fn skip_mode_counts_bad_lines_by_reason_and_keeps_the_good_ones() {
    let dir = temp_dir("skip");
    let f = dir.join("a.txt");
    let cases = bad_cases();
    let body: Vec<String> = cases.iter().map(|c| c.0.clone()).collect();
    write(
        &f,
        &format!(
            "{HEADER}\nok/00001.jpg,0,0,0,{AUS}\n{}\nok/00002.jpg,0,0,0,{AUS}\n",
            body.join("\n")
        ),
    );
    let opts = ReadOptions {
        on_bad_sample: OnBadSample::Skip,
        ..Default::default()
    };
    let (s, summary) = read_mtl_annotations(&f, &opts).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(summary.total_skipped(), cases.len());
    for reason in [
        BadReason::FieldCount,
        BadReason::NotANumber,
        BadReason::OutOfRange,
        BadReason::BadImageName,
    ] {
        let want = cases.iter().filter(|c| c.2 == reason).count();
        assert_eq!(
            summary.skipped.get(&reason).copied().unwrap_or(0),
            want,
            "{reason:?}"
        );
    }
    assert!(
        summary.first_errors[0].contains("a.txt:3: field 'line'"),
        "{:?}",
        summary.first_errors
    );
}

#[test]
fn missing_image_and_wrong_header_are_reported() {
    let dir = temp_dir("missing");
    let root = dir.join("cropped_aligned");
    write(&root.join("v/00001.jpg"), "placeholder");
    let f = dir.join("ann.txt");
    write(
        &f,
        &format!("{HEADER}\nv/00001.jpg,0,0,0,{AUS}\nv/00002.jpg,0,0,0,{AUS}\n"),
    );
    let opts = ReadOptions {
        image_root: Some(root),
        ..Default::default()
    };
    let msg = read_mtl_annotations(&f, &opts).unwrap_err().to_string();
    assert!(
        msg.contains("ann.txt:3: field 'image'") && msg.contains("not found"),
        "{msg}"
    );
    let skip = ReadOptions {
        on_bad_sample: OnBadSample::Skip,
        ..opts
    };
    let (s, summary) = read_mtl_annotations(&f, &skip).unwrap();
    assert_eq!((s.len(), summary.skipped[&BadReason::MissingImage]), (1, 1));

    write(&f, "image,valence,arousal,expression,aus\n");
    let msg = read_mtl_annotations(&f, &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("ann.txt:1: field 'header'"), "{msg}");
}

#[test]
fn legacy_2020_label_set_has_8_aus_and_7_expressions() {
    let dir = temp_dir("legacy");
    let f = dir.join("a.txt");
    let header = "image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU12,AU15,AU20,AU25";
    write(&f, &format!("{header}\nv/00001.jpg,0.5,0.5,6,1,0,0,1,1,0,1,0\nv/00002.jpg,0.5,0.5,7,1,0,0,1,1,0,1,0\n"));
    let opts = ReadOptions {
        label_set: LabelSet::Abaw2020,
        ..Default::default()
    };
    let msg = read_mtl_annotations(&f, &opts).unwrap_err().to_string();
    assert!(
        msg.contains("a.txt:3: field 'expression'") && msg.contains("0..6"),
        "{msg}"
    );
    write(
        &f,
        &format!("{header}\nv/00001.jpg,0.5,0.5,6,1,0,0,1,1,0,1,0\n"),
    );
    let (s, _) = read_mtl_annotations(&f, &opts).unwrap();
    assert_eq!(s[0].aus.as_deref(), Some(&[1u8, 0, 0, 1, 1, 0, 1, 0][..]));
    // The 2022 reader refuses the 2020 header instead of misreading columns.
    assert!(read_mtl_annotations(&f, &ReadOptions::default()).is_err());
}

#[test]
fn per_task_folders_merge_into_one_record_per_frame() {
    let root = temp_dir("tasks");
    write(
        &root.join("VA_Estimation_Challenge/Train_Set/a.txt"),
        "valence,arousal\n0.5,0.25\n-5,-5\n-0.5,0.1\n-5,-5\n",
    );
    // The older folder name is accepted too.
    write(
        &root.join("EXPR_Recognition_Challenge/Train_Set/a.txt"),
        "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n4\n-1\n",
    );
    write(
        &root.join("EXPR_Recognition_Challenge/Train_Set/b_left.txt"),
        "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n2\n",
    );
    write(
        &root.join("AU_Detection_Challenge/Train_Set/a.txt"),
        &format!("AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26\n{AUS}\n{AUS}\n{NO_AU}\n"),
    );
    // A validation file must not leak into the training split.
    write(
        &root.join("VA_Estimation_Challenge/Validation_Set/c.txt"),
        "valence,arousal\n0.1,0.1\n",
    );
    let (s, summary) = read_affwild_tasks(&root, Split::Train, &ReadOptions::default()).unwrap();
    let au = Some(vec![1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0]);
    let got: Vec<_> = s
        .iter()
        .map(|s| (s.image.as_str(), s.va, s.expr, s.aus.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a/00001.jpg", Some([0.5, 0.25]), Some(4), au.clone()),
            ("a/00002.jpg", None, None, au.clone()),
            ("a/00003.jpg", Some([-0.5, 0.1]), None, None),
            ("b_left/00001.jpg", None, Some(2), None),
        ]
    );
    // a/00004: VA -5 and no other task: dropped.
    assert_eq!((summary.samples, summary.unlabelled), (4, 1));

    write(
        &root.join("AU_Detection_Challenge/Train_Set/a.txt"),
        "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26\n1,0\n",
    );
    let msg = read_affwild_tasks(&root, Split::Train, &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("a.txt:2: field 'line'") && msg.contains("AU_Detection_Challenge"),
        "{msg}"
    );
    write(
        &root.join("VA_Estimation_Challenge/Train_Set/a.txt"),
        "valence,arousal\n0.5,2\n",
    );
    let opts = ReadOptions {
        on_bad_sample: OnBadSample::Skip,
        ..Default::default()
    };
    let (_, summary) = read_affwild_tasks(&root, Split::Train, &opts).unwrap();
    assert_eq!(summary.total_skipped(), 2);
    // With an image root, frames whose image is missing are reported against their task file.
    let (ds, summary) = mtaffect::data::Dataset::from_affwild_tasks(
        &root,
        Split::Train,
        &root.join("cropped_aligned"),
        &opts,
    )
    .unwrap();
    assert!(ds.samples.is_empty());
    assert_eq!(summary.skipped[&BadReason::MissingImage], 2);
    assert!(
        summary
            .first_errors
            .iter()
            .any(|m| m.contains("EXPR_Recognition_Challenge/Train_Set/a.txt:2: field 'image'")),
        "{:?}",
        summary.first_errors
    );
    assert!(
        summary
            .first_errors
            .iter()
            .any(|m| m.contains("a.txt:2: field 'arousal'")),
        "{:?}",
        summary.first_errors
    );
}

#[test]
fn predictions_are_thresholded_and_written_atomically() {
    let dir = temp_dir("pred");
    let f = dir.join("sub/predictions.txt");
    let mut logits = vec![-1.0f32; 12];
    logits[0] = 0.0; // sigmoid exactly 0.5 counts as present
    logits[6] = 3.0;
    logits[11] = -0.01;
    let p = Prediction::from_logits(
        "v/00001.jpg",
        [1.5, -0.25],
        &[0.1, 0.2, 0.9, 0.9, 0.0, 0.0, 0.0, 0.3],
        &logits,
    );
    assert_eq!(p.expr, 2, "first of tied maxima");
    write_predictions(&f, LabelSet::Abaw2022, &[p]).unwrap();
    let text = std::fs::read_to_string(&f).unwrap();
    assert_eq!(
        text,
        "image,valence,arousal,expression,aus\nv/00001.jpg,1,-0.25,2,1,0,0,0,0,0,1,0,0,0,0,0\n"
    );
    assert!(!mtaffect::io::tmp_path(&f).exists());
    let wrong = Prediction::from_logits("v/00002.jpg", [0.0, 0.0], &[1.0], &[0.0; 8]);
    assert!(write_predictions(&f, LabelSet::Abaw2022, &[wrong]).is_err());
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        text,
        "a failed write leaves the old file"
    );
}

#[test]
fn duplicate_frames_merge_when_equal_and_drop_both_when_conflicting() {
    let dir = temp_dir("dups");
    let f = dir.join("training_set_annotations.txt");
    let lines = [
        format!("v1/00001.jpg,0.5,-0.25,-1,{NO_AU}"),
        format!("v1/00002.jpg,-5,-5,3,{NO_AU}"),
        format!("v1/00001.jpg,0.5,-0.25,-1,{NO_AU}"), // same labels: merged
        format!("v1/00002.jpg,-5,-5,4,{NO_AU}"),      // conflicts with line 3
        format!("v1/00003.jpg,-5,-5,1,{NO_AU}"),
    ];
    write(&f, &format!("{HEADER}\n{}\n", lines.join("\n")));
    let err = read_mtl_annotations(&f, &ReadOptions::default()).unwrap_err();
    assert!(
        matches!(&err, Error::Parse { line: 5, msg, .. } if msg.contains("also on line 3")),
        "{err}"
    );
    let skip = ReadOptions {
        on_bad_sample: OnBadSample::Skip,
        ..ReadOptions::default()
    };
    let (s, summary) = read_mtl_annotations(&f, &skip).unwrap();
    let kept: Vec<u32> = s.iter().map(|s| s.frame).collect();
    assert_eq!(kept, vec![1, 3]);
    assert_eq!(summary.duplicates_merged, 1);
    assert_eq!(summary.skipped[&BadReason::ConflictingDuplicate], 2);
}

#[test]
fn a_byte_order_mark_is_ignored_and_bad_text_is_located() {
    let dir = temp_dir("text");
    let f = dir.join("training_set_annotations.txt");
    let body = format!("{HEADER}\nv1/00001.jpg,-5,-5,3,{NO_AU}\n");
    write(&f, &format!("\u{feff}{body}"));
    let (s, _) = read_mtl_annotations(&f, &ReadOptions::default()).unwrap();
    assert_eq!(s.len(), 1);

    let mut bytes = body.clone().into_bytes();
    bytes.extend_from_slice(b"v1/00002.jpg,-5,-5,\xFF3\n");
    std::fs::write(&f, bytes).unwrap();
    let err = read_mtl_annotations(&f, &ReadOptions::default()).unwrap_err();
    assert!(
        matches!(&err, Error::Parse { line: 3, msg, .. } if msg.contains("0xFF at column 20")),
        "{err}"
    );

    // A Cyrillic 'а' looks like the Latin 'a' of "valence".
    write(&f, &body.replacen("valence", "vаlence", 1));
    let err = read_mtl_annotations(&f, &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("character 8") && err.contains("'a' (byte 0x61)") && err.contains("0xD0 0xB0"),
        "{err}"
    );
}
