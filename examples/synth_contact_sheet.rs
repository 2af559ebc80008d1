//! Writes `docs/synth_contact_sheet.png`: synthetic faces, one column per
//! expression (Neutral, Anger, Disgust, Fear, Happiness, Sadness, Surprise,
//! Other), one row per identity.
//!
//! Run: `cargo run --release --example synth_contact_sheet [out.png] [face size] [rows]`

use mtaffect::data::synth::contact_sheet;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "docs/synth_contact_sheet.png".into());
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let (size, rows) = (arg(2, 112), arg(3, 4));
    let px = contact_sheet(size, rows, 7);
    image::save_buffer(
        &out,
        &px,
        (8 * size) as u32,
        (rows * size) as u32,
        image::ExtendedColorType::Rgb8,
    )?;
    println!("wrote {out}");
    Ok(())
}
