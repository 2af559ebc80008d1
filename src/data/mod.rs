//! Data: ABAW annotation formats, the image pipeline, the prefetching loader
//! and a synthetic face generator.
//!
//! - [`abaw_annotations`]: the multi-task file (`*_set_annotations.txt`), read and write.
//! - [`affwild_tasks`]: the per-task folders (VA / EXPR / AU), merged per frame.
//! - [`predictions`]: the challenge submission file.
//! - [`image`], [`augment`]: decode, resize, normalise to [-1, 1] HWC; augmentations.
//! - [`image_folder`]: any folder of face images as unlabelled samples (pretraining).
//! - [`image_check`]: every referenced image checked at load time, cached per file.
//! - [`loader`], [`sampler`]: deterministic, resumable, multi-threaded batches.
//! - [`sequence`], [`chunks`]: per-frame feature files as labelled sequences,
//!   cut into chunks and batched as streams for temporal models.
//! - [`video_share`]: the label-scarce protocol's share of a split's videos.

pub mod abaw_annotations;
pub mod affwild_tasks;
pub mod augment;
pub mod chunks;
mod fields;
pub mod image;
pub mod image_check;
pub mod image_folder;
pub mod labels;
pub mod loader;
pub mod predictions;
pub mod report;
pub mod sampler;
pub mod sequence;
pub mod synth;
mod transform;
pub mod video_share;

pub use abaw_annotations::{read_mtl_annotations, write_mtl_annotations, ReadOptions};
pub use affwild_tasks::{read_affwild_tasks, Split};
pub use augment::AugmentConfig;
pub use labels::{LabelSet, Sample};
pub use loader::{Batch, Dataset, EpochIter, Loader, LoaderConfig};
pub use predictions::{write_predictions, Prediction};
pub use report::{BadReason, LoadSummary, OnBadSample};
pub use sampler::SamplerKind;
pub use transform::BatchTransform;
