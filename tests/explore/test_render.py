"""The terminal views and the PNG grid."""

from PIL import Image

from sparc.explore import Explorer
from sparc.explore.render import latent_card, query_table, write_grid


def test_latent_card_and_query_table(world):
    ex = Explorer.open(world["run"], log=lambda m: None)
    lat = int(ex.stats.fires[0].min(0).argmax())  # fires in every stream
    card = latent_card(ex, lat, rows=3)
    assert card.startswith(f"latent {lat} of {ex.stats.n_latents}")
    for s in ex.stats.streams:
        assert f"top rows, {s}" in card
    assert "agreement:" in card and "concept Jaccard:" in card and "nearest latents by decoder cosine" in card
    assert "name:" in card and "words (through txt):" in card
    result = ex.query_text("a crab", top=3)
    table = query_table(ex, result)
    assert "through txt (encoded alone)" in table and "rows of img by cosine of sparse codes" in table
    assert table.count("\n   1. ") == 2


def test_grid_png(world, tmp_path):
    ex = Explorer.open(world["run"], log=lambda m: None)
    result = ex.query_text("a crab", top=4)
    path = write_grid(ex, result, tmp_path / "grid.png", cell=64)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width >= 4 * 64 and im.height > 2 * 64
