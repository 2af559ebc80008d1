"""Checks of scripts/side_by_side.py's parsing, table and BENCHMARKS.md
update without a GPU or torch: `python3 -m unittest scripts/test_side_by_side.py`.
The end-to-end smoke run (a fake bench, PyTorch on the CPU) is the README's
`side_by_side.py --ours ./fake_bench.sh --device cpu --quick --skip-compile`."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import side_by_side as sbs  # noqa: E402

# Lines as benches/cuda_train_step.rs prints them (format string copied by
# hand; the R50 line without the step's TFLOP, which the parser also accepts).
BENCH = """device: NVIDIA H100 80GB HBM3 (132 SMs)
train se-resnet-18 112x112 b64       41.7 ms/step   1533.0 images/s  (0.1857 TFLOP/step in convolutions and GEMMs, 4.5 TFLOP/s; 11352046 params; pool 1.0 GiB, 0 driver allocations while timed)
train se-resnet-50 112x112 b256     377.6 ms/step    678.0 images/s  (26049646 params; pool 14.1 GiB, 0 driver allocations while timed)
train se-resnet-50 b64: skipped (cuda: out of memory)
train bf16 se-resnet-18 112x112 b64       20.0 ms/step   3200.0 images/s  (11352046 params; pool 1.0 GiB, 0 driver allocations while timed)
train bf16 se-resnet-50 b64: skipped (cuda: out of memory)
"""


class ParseTest(unittest.TestCase):
    def test_bench_lines_and_skips(self):
        cells = sbs.parse_ours(BENCH, 112)
        self.assertEqual(cells[((18, 64, 112), "ours")], 1533.0)
        self.assertEqual(cells[((50, 256, 112), "ours")], 678.0)
        self.assertEqual(str(cells[((50, 64, 112), "ours")]), "failed: cuda: out of memory")
        self.assertEqual(cells[((18, 64, 112), "ours_bf16")], 3200.0)
        self.assertEqual(str(cells[((50, 64, 112), "ours_bf16")]), "failed: cuda: out of memory")
        self.assertEqual(len(cells), 5)

    def test_step_flops_where_printed(self):
        self.assertEqual(sbs.parse_flops(BENCH), {(18, 64, 112): 0.1857})

    def test_torch_json_lines_only(self):
        text = '# torch 2.11\n{"model": "SE-ResNet-18", "images_per_s": 3503.0}\n| table |\n'
        self.assertEqual(sbs.parse_torch(text), [{"model": "SE-ResNet-18", "images_per_s": 3503.0}])


class TableTest(unittest.TestCase):
    def test_best_layout_ratios_and_failures(self):
        rows = {
            (18, 64, 112): {"ours": 1533.0, "ours_bf16": 6572.0, "eager_f32_nchw": 3236.0,
                            "eager_f32_cl": 3503.0, "eager_bf16_cl": 3286.0,
                            "compile_f32_cl": sbs.Failed("timeout after 300 s"), "compile_bf16_cl": 5000.0},
            (50, 64, 112): {"ours": sbs.Failed("out of | memory"), "eager_f32_nchw": 1482.0,
                            "compile_f32_cl": sbs.Failed("--budget spent", "not run")},
        }
        lines = sbs.table(rows, "header").splitlines()
        self.assertEqual(lines[0], "header")
        r18 = [c.strip() for c in lines[4].strip("|").split("|")]
        # model, batch, size, ours f32, ours bf16, eager f32 (best of the
        # layouts), eager bf16, compiled f32, compiled bf16, ours f32/eager f32,
        # ours f32/compiled f32, ours bf16/eager bf16, ours bf16/compiled bf16,
        # our best/PyTorch's best.
        self.assertEqual(r18, ["SE-ResNet-18", "64", "112x112", "1533", "6572", "3503 (CL)", "3286",
                               "failed: timeout after 300 s", "5000", "0.44", "-", "2.00", "1.31", "1.31"])
        r50 = [c.strip() for c in lines[5].strip("|").split("|")]
        self.assertEqual(r50[3], "failed: out of / memory")  # a | would break the table
        self.assertEqual(r50[4], "-")
        self.assertEqual(r50[5], "1482 (NCHW)")
        self.assertEqual(r50[7], "not run: --budget spent")
        self.assertEqual(r50[9:], ["-", "-", "-", "-", "-"])

    def test_utilisation_against_the_peak_of_each_precision(self):
        rows = {(18, 64, 112): {"ours": 1533.0, "ours_bf16": 6400.0, "eager_f32_nchw": 3236.0,
                                "eager_f32_cl": 3503.0, "compile_bf16_cl": sbs.Failed("timeout")},
                (50, 64, 112): {"ours": 600.0}}
        md = sbs.utilisation(rows, {(18, 64, 112): 0.2}, "NVIDIA H100 80GB HBM3").splitlines()
        self.assertIn("989.4 TFLOP/s bf16 and 66.9 f32", md[0])
        self.assertEqual(len(md), 5)  # no row for R50: its step was not counted
        cells = [c.strip() for c in md[4].strip("|").split("|")]
        # 0.2 TFLOP per 64 images: 1533 images/s is 4.79 TFLOP/s, 7.2% of
        # the f32 peak; 6400 is 20 TFLOP/s, 2.0% of the bf16 peak; eager f32
        # takes the better layout (3503).
        self.assertEqual(cells, ["SE-ResNet-18", "64", "0.2000", "4.79 (7.2%)", "20.0 (2.0%)",
                                 "10.9 (16.4%)", "-", "-", "-"])
        unknown = sbs.utilisation(rows, {(18, 64, 112): 0.2}, "cpu").splitlines()
        self.assertIn("no peak known for cpu", unknown[0])
        self.assertEqual(unknown[4].split("|")[4].strip(), "4.79")
        self.assertEqual(sbs.utilisation(rows, {}, "cpu"), "")

    def test_significant_figures(self):
        self.assertEqual([sbs.fmt(v) for v in [0.456, 12.34, 2776.4]], ["0.456", "12.3", "2776"])


class BlockTest(unittest.TestCase):
    def test_appended_once_then_replaced_in_place(self):
        doc = "# Benchmarks\n\nsome text\n"
        once = sbs.replace_block(doc, "table one\n")
        self.assertTrue(once.startswith(doc + "\n"))
        self.assertIn(f"{sbs.BEGIN}\ntable one\n{sbs.END}\n", once)
        twice = sbs.replace_block(once + "\n## later section\n", "table two\n")
        self.assertNotIn("table one", twice)
        self.assertEqual(twice.count(sbs.BEGIN), 1)
        self.assertTrue(twice.endswith(f"{sbs.END}\n\n## later section\n"))

    def test_a_lone_marker_is_refused(self):
        with self.assertRaises(SystemExit):
            sbs.replace_block(f"x\n{sbs.BEGIN}\ny\n", "t\n")


if __name__ == "__main__":
    unittest.main()
