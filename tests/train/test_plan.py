"""Guard rails before training (sparc/train/plan.py): the run's size said first, and a
warning with working settings when the data is too small for them."""

import pytest

from sparc.cli.main import main
from sparc.train import TrainConfig
from sparc.train.plan import FEW_STEPS, plan_training, suggested_batch
from tests.synthetic import make_store


def run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_small_store_of_the_report_gets_both_warnings_and_a_working_suggestion():
    # 119 training rows with the paper's settings and 30 epochs: 30 steps (README, "Training on little data").
    cfg = TrainConfig(batch_size=256, lr=1e-4, epochs=30)
    plan = plan_training(119, 1, cfg)
    assert (plan.train_rows, plan.steps_per_epoch, plan.total_steps) == (119, 1, 30)
    assert plan.describe(cfg) == "training on 119 rows, batch 256: 1 steps per epoch × 30 epochs = 30 steps, lr 0.0001"
    batch, few = plan.warnings
    assert batch.startswith("the batch (256 rows) is larger than the training split (119 rows)")
    assert few == (f"only 30 steps: too few for most latents to learn (fewer than {FEW_STEPS}); "
                   "--batch-size 8 --lr 0.001 gives 450 steps")


def test_enough_steps_no_warning_and_max_steps_is_the_users_choice():
    cfg = TrainConfig(batch_size=256, epochs=50)
    assert plan_training(100_000, 391, cfg).warnings == ()
    capped = TrainConfig(batch_size=32, epochs=50, max_steps=20)
    plan = plan_training(10_000, 313, capped)
    assert plan.total_steps == 20 and plan.warnings == ()
    assert plan.describe(capped).endswith("= 20 steps (capped by --max-steps 20), lr 0.0001")


def test_a_batch_already_small_gets_more_epochs_and_ranks_share_the_batch():
    cfg = TrainConfig(batch_size=8, lr=1e-3, epochs=5)
    (few,) = plan_training(200, 25, cfg).warnings
    assert few.endswith("--epochs 40 gives about 1,000 steps")  # no lr advice: already 1e-3
    (big, _) = plan_training(300, 1, TrainConfig(batch_size=256, epochs=10), ranks=2).warnings
    assert big.startswith("the batch (512 rows)")


@pytest.mark.parametrize("rows,epochs,batch", [(119, 30, 256), (5_000, 10, 256), (50, 1, 4), (10**6, 50, 256)])
def test_the_suggested_batch_is_a_power_of_two_within_bounds(rows, epochs, batch):
    b = suggested_batch(rows, epochs, batch)
    assert b <= batch and (b >= 8 or b == batch) and b & (b - 1) == 0
    if b * 2 <= batch:
        assert rows * epochs / (b * 2) < 1000  # the next power would give too few steps


def test_sparc_train_says_its_plan_and_warns_on_little_data(tmp_path, capsys):
    store = make_store(tmp_path / "store", n_rows=150)
    code, out, err = run(["train", store, "--out", tmp_path / "run", "--n-latents", "32", "--k", "4", "--epochs", "2",
                          "--no-progress"], capsys)
    assert code == 0, err
    assert "training on " in out and "batch 256: 1 steps per epoch × 2 epochs = 2 steps" in out
    assert "warning: the batch (256 rows) is larger than the training split" in out
    assert "warning: only 2 steps" in out and "--batch-size 8 --lr 0.001" in out and err == ""
