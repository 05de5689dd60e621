"""The gallery at an artist's scale: the folder is listed off the UI thread, thumbnails are
made only for the rows in view (and not for rows scrolled past), kept under a bound in
bytes, read back from the sidecar cache after a restart, and every per-image operation
finds its row through the index, never by searching the list."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtGui import QColor, QImage

from studio.ui import gallery_listing, gallery_thumbnails
from studio.ui.gallery import GalleryModel, GalleryPanel, list_images
from studio.ui.gallery_thumbnails import SidecarStore, ThumbnailAtlas


def _png(size: tuple[int, int] = (64, 64), colour: tuple[int, int, int] = (40, 60, 160)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def _folder(folder: Path, count: int, data: bytes | None = None) -> list[Path]:
    """`count` copies of one PNG, a second apart, oldest first (fast: bytes only)."""
    data = data or _png()
    folder.mkdir(parents=True, exist_ok=True)
    start = time.time() - count - 10
    paths = []
    for number in range(count):
        path = folder / f"image-{number:05d}.png"
        path.write_bytes(data)
        os.utime(path, (start + number, start + number))
        paths.append(path)
    return paths


@pytest.fixture
def make_panel(qtbot, tmp_path):  # noqa: ANN001, ANN201
    """Gallery panels on a private thumbnail cache, shut down (threads ended) at the end."""
    panels: list[GalleryPanel] = []

    def make(folder: Path, size: tuple[int, int] = (330, 420)) -> GalleryPanel:
        panel = GalleryPanel(folder, thumbnail_cache=tmp_path / "thumbnails")
        qtbot.addWidget(panel)
        panel.resize(*size)
        panel.show()
        qtbot.waitExposed(panel)
        panels.append(panel)
        return panel

    yield make
    for panel in panels:
        panel.shutdown()


def _listed(qtbot, panel: GalleryPanel) -> GalleryPanel:  # noqa: ANN001
    qtbot.waitUntil(lambda: not panel.model.is_listing(), timeout=10000)
    return panel


def _in_view_shown(qtbot, panel: GalleryPanel) -> tuple[int, int]:  # noqa: ANN001
    """Wait until every row in view has its thumbnail; the rows in view."""

    def shown() -> bool:
        rows = panel.visible_rows()
        return rows is not None and all(
            panel.model.key_at(row) in panel.model.cache for row in range(rows[0], rows[1] + 1)
        )

    qtbot.waitUntil(shown, timeout=10000)
    rows = panel.visible_rows()
    assert rows is not None
    return rows


# -- listing ------------------------------------------------------------------------------


def test_listing_happens_off_the_ui_thread_and_rows_arrive_in_batches(  # noqa: ANN001
    qtbot, make_panel, tmp_path, monkeypatch
):
    paths = _folder(tmp_path / "outputs", 2000)
    gate = threading.Event()
    scan = gallery_listing.scan_images

    def slow_scan(folder, stop=lambda: False):  # noqa: ANN001, ANN202
        gate.wait(5)  # a folder on a slow disk: the window must not wait for it
        return scan(folder, stop)

    monkeypatch.setattr(gallery_listing, "scan_images", slow_scan)
    started = time.monotonic()
    panel = make_panel(tmp_path / "outputs")
    assert time.monotonic() - started < 2
    inserts: list[int] = []
    panel.model.rowsInserted.connect(lambda _parent, first, last: inserts.append(last - first + 1))
    assert panel.model.rowCount() == 0 and panel.model.is_listing()
    assert "Reading" in panel.count_label.text()
    gate.set()
    _listed(qtbot, panel)
    assert panel.model.rowCount() == 2000
    assert len(inserts) > 1 and inserts[0] == gallery_listing.FIRST_BATCH  # a screenful first
    assert panel.model.paths() == paths[::-1] == list_images(tmp_path / "outputs")
    assert "2000 images in" in panel.count_label.text()


def test_an_image_selected_before_it_is_listed_is_selected_when_it_arrives(  # noqa: ANN001
    qtbot, make_panel, tmp_path, monkeypatch
):
    paths = _folder(tmp_path / "outputs", 600)
    gate = threading.Event()
    scan = gallery_listing.scan_images
    monkeypatch.setattr(
        gallery_listing, "scan_images", lambda folder, stop: gate.wait(5) and scan(folder, stop)
    )
    panel = make_panel(tmp_path / "outputs")
    panel.select(paths[10])  # the window restoring the last selection, say
    gate.set()
    _listed(qtbot, panel)
    assert panel.selected_path() == paths[10]


def test_a_new_image_during_the_listing_goes_first_and_is_listed_once(  # noqa: ANN001
    qtbot, make_panel, tmp_path, monkeypatch
):
    paths = _folder(tmp_path / "outputs", 300)
    gate = threading.Event()
    scan = gallery_listing.scan_images
    monkeypatch.setattr(
        gallery_listing, "scan_images", lambda folder, stop: gate.wait(5) and scan(folder, stop)
    )
    panel = make_panel(tmp_path / "outputs")
    new = _folder(tmp_path / "outputs" / "new", 1)[0].rename(tmp_path / "outputs" / "zz-new.png")
    panel.add([new])  # a job finished while the folder was being read
    gate.set()
    _listed(qtbot, panel)
    assert panel.model.paths() == [new, *paths[::-1]]
    assert panel.selected_path() == new


# -- thumbnails: only those in view --------------------------------------------------------


def test_only_rows_in_view_ask_for_thumbnails(qtbot, make_panel, tmp_path):  # noqa: ANN001
    _folder(tmp_path / "outputs", 2000)
    panel = make_panel(tmp_path / "outputs")
    asked: list[str] = []
    request = panel.model.loader.request
    panel.model.loader.request = lambda key: (asked.append(key), request(key))  # type: ignore[method-assign]
    _listed(qtbot, panel)
    first, last = _in_view_shown(qtbot, panel)
    in_view = last - first + 1
    assert 4 <= in_view < 60
    rows = {panel.model.row_of(key) for key in asked}
    assert rows <= set(range(first, last + 1)), sorted(rows)
    assert len(panel.model.cache) == in_view  # made only for those

    # Halfway down: the rows now in view, not those in between
    asked.clear()
    panel.select(Path(panel.model.key_at(1000)))
    first, last = _in_view_shown(qtbot, panel)
    assert first <= 1000 <= last
    rows = {panel.model.row_of(key) for key in asked}
    assert rows <= set(range(first, last + 1)), sorted(rows)


def test_thumbnails_of_rows_scrolled_past_are_not_made(  # noqa: ANN001
    qtbot, make_panel, tmp_path, monkeypatch
):
    _folder(tmp_path / "outputs", 2000)
    gate = threading.Event()
    made: list[str] = []
    make = gallery_thumbnails.make_thumbnail

    def slow_make(path, size=gallery_thumbnails.THUMB_SIZE):  # noqa: ANN001, ANN202
        made.append(str(path))
        gate.wait(5)  # a large picture on a slow disk: requests pile up meanwhile
        return make(path, size)

    monkeypatch.setattr(gallery_thumbnails, "make_thumbnail", slow_make)
    panel = make_panel(tmp_path / "outputs")
    try:
        _listed(qtbot, panel)
        qtbot.waitUntil(lambda: len(made) == 1, timeout=5000)  # the worker is held
        bar = panel.view.verticalScrollBar()
        for _ in range(12):  # a fling through twelve screens
            bar.setValue(bar.value() + bar.pageStep())
            qtbot.wait(5)
        rows = panel.visible_rows()
        assert rows is not None and rows[0] > 100
        columns = max(1, panel.view.viewport().width() // (panel.view.gridSize().width()))
        near = set(range(rows[0] - columns, rows[1] + columns + 1))
        waiting = {panel.model.row_of(key) for key in panel.model.loader.waiting()}
        assert waiting and waiting <= near, (sorted(waiting), rows)
    finally:
        gate.set()
    _in_view_shown(qtbot, panel)
    made_rows = {panel.model.row_of(key) for key in made}
    assert len(made_rows) < 3 * (rows[1] - rows[0] + 1) + 2  # not twelve screens' worth


def test_a_fling_makes_no_thumbnails_until_the_view_settles(  # noqa: ANN001
    qtbot, make_panel, tmp_path, monkeypatch
):
    _folder(tmp_path / "outputs", 2000)
    made: list[str] = []
    make = gallery_thumbnails.make_thumbnail

    def counting(path, size=gallery_thumbnails.THUMB_SIZE):  # noqa: ANN001, ANN202
        made.append(str(path))
        return make(path, size)

    monkeypatch.setattr(gallery_thumbnails, "make_thumbnail", counting)
    panel = _listed(qtbot, make_panel(tmp_path / "outputs"))
    first, last = _in_view_shown(qtbot, panel)
    in_view = last - first + 1
    made.clear()
    bar = panel.view.verticalScrollBar()
    for _ in range(15):  # a screen at a time, as fast as the window paints
        bar.setValue(bar.value() + bar.pageStep())
        qtbot.wait(5)
    rows = panel.visible_rows()
    assert rows is not None and rows[0] > 15 * in_view // 2
    during = {panel.model.row_of(key) for key in made}
    assert len(during) < in_view, sorted(during)  # not a thumbnail for each screen passed
    first, last = _in_view_shown(qtbot, panel)  # once it settles, the screen fills
    made_rows = {panel.model.row_of(key) for key in made}
    assert set(range(first, last + 1)) <= made_rows


def test_the_thumbnail_cache_stays_under_its_bound_in_bytes(qtbot, make_panel, tmp_path):  # noqa: ANN001
    _folder(tmp_path / "outputs", 400)
    panel = make_panel(tmp_path / "outputs")
    cache = panel.model.cache
    cache.set_limit(40 * 97 * 97 * 4)  # a page of 36 thumbnails (6×6)
    most = [0]
    panel.model.dataChanged.connect(lambda *_: most.__setitem__(0, max(most[0], cache.bytes)))
    _listed(qtbot, panel)
    bar = panel.view.verticalScrollBar()
    while bar.value() < bar.maximum():  # browsing: a third of a screen at a time
        bar.setValue(bar.value() + bar.pageStep() // 3)
        _in_view_shown(qtbot, panel)
    assert 0 < most[0] <= cache.limit and 0 < cache.bytes <= cache.limit
    assert len(cache) == 36  # the bound is spent, not undercut
    # what is in view now is kept; the top of the folder, long scrolled past, is not
    first, last = panel.visible_rows() or (0, 0)
    assert all(panel.model.key_at(row) in cache for row in range(first, last + 1))
    assert panel.model.key_at(0) not in cache


def test_the_least_recently_used_thumbnail_goes_first(qapp) -> None:  # noqa: ANN001
    cache = ThumbnailAtlas(limit=4 * 97 * 97 * 4)  # one page of 2×2 slots
    colours = {"a": "red", "b": "green", "c": "blue", "d": "yellow", "e": "white"}
    for key in "abcd":
        image = QImage(96, 60 + ord(key) - ord("a"), QImage.Format.Format_RGB32)
        image.fill(QColor(colours[key]))
        cache.put(key, image)
    assert cache.find("a") is not None  # used: now the most recent
    image = QImage(30, 96, QImage.Format.Format_RGB32)
    image.fill(QColor(colours["e"]))
    cache.put("e", image)  # takes the slot of the least recently used, "b"
    assert "b" not in cache and all(k in cache for k in "acde") and len(cache) == 4
    assert cache.bytes <= cache.limit
    for key in "acde":  # each picture whole, at its size, in its own slot
        picture = cache.pixmap(key).toImage()
        expected = (30, 96) if key == "e" else (96, 60 + ord(key) - ord("a"))
        assert (picture.width(), picture.height()) == expected
        corners = {(0, 0), (picture.width() - 1, picture.height() - 1)}
        assert {picture.pixelColor(x, y).name() for x, y in corners} == {
            QColor(colours[key]).name()
        }
    cache.pop("a")
    assert "a" not in cache and len(cache) == 3 and cache.pixmap("a") is None


# -- the sidecar cache on disk --------------------------------------------------------------


def _large_images(folder: Path, count: int) -> list[Path]:
    """Noise pictures too large to decode at every start (over SIDECAR_MIN_BYTES)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for number in range(count):
        pixels = rng.integers(0, 255, (220, 300, 3), dtype=np.uint8)
        path = folder / f"large-{number}.png"
        Image.fromarray(pixels).save(path)
        assert path.stat().st_size >= gallery_thumbnails.SIDECAR_MIN_BYTES
        os.utime(path, (time.time() - 100 + number,) * 2)
        paths.append(path)
    return paths


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the pictures decoded into thumbnails, in order."""
    names: list[str] = []
    make = gallery_thumbnails.make_thumbnail

    def counting(path, size=gallery_thumbnails.THUMB_SIZE):  # noqa: ANN001, ANN202
        names.append(Path(path).name)
        return make(path, size)

    monkeypatch.setattr(gallery_thumbnails, "make_thumbnail", counting)
    return names


def test_sidecar_thumbnails_are_used_after_a_restart(  # noqa: ANN001
    qtbot, make_panel, tmp_path, decoded
):
    paths = _large_images(tmp_path / "outputs", 3)
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    first = make_panel(tmp_path / "outputs")
    _in_view_shown(qtbot, _listed(qtbot, first))
    assert sorted(decoded) == sorted(p.name for p in paths)
    sidecars = sorted((tmp_path / "thumbnails").glob("*.png"))
    assert len(sidecars) == 3
    first.shutdown()
    first.close()

    decoded.clear()  # the studio starts again: nothing to decode
    second = make_panel(tmp_path / "outputs")
    _in_view_shown(qtbot, _listed(qtbot, second))
    assert decoded == []
    image = second.model.cache.pixmap(str(paths[0])).toImage()
    assert max(image.width(), image.height()) == gallery_thumbnails.THUMB_SIZE

    # a picture changed since (same name) is decoded again; the user's files are untouched
    second.shutdown()
    second.close()
    Image.new("RGB", (300, 220), (200, 30, 30)).save(paths[1])
    os.utime(paths[1], (time.time(),) * 2)
    before[paths[1]] = hashlib.sha256(paths[1].read_bytes()).hexdigest()
    third = make_panel(tmp_path / "outputs")
    _in_view_shown(qtbot, _listed(qtbot, third))
    assert decoded == [paths[1].name]
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths} == before
    assert sorted(os.listdir(tmp_path / "outputs")) == sorted(p.name for p in paths)


def test_a_thumbnail_on_its_way_to_the_window_is_not_made_twice(  # noqa: ANN001
    qtbot, tmp_path, decoded
):
    """The view repaints (and asks again) between the worker's finishing a thumbnail and
    the window's receiving it: the picture is decoded once (CI saw it decoded twice)."""
    path = tmp_path / "small.png"
    Image.new("RGB", (40, 30), (10, 200, 30)).save(path)
    loader = gallery_thumbnails.ThumbnailLoader()
    received: list[str] = []
    loader.loaded.connect(lambda key, image: received.append(key))
    loader.request(str(path))
    loader._pool.waitForDone(5000)  # made, not yet received: no event has been processed
    assert decoded == ["small.png"] and received == []
    loader.request(str(path))  # a repaint meanwhile
    qtbot.waitUntil(lambda: received == [str(path)])
    loader._pool.waitForDone(5000)
    assert decoded == ["small.png"]
    loader.request(str(path))  # received: asking again (the cache dropped it) makes it again
    qtbot.waitUntil(lambda: len(received) == 2)
    assert decoded == ["small.png", "small.png"]
    loader.shutdown()


def test_the_sidecar_cache_stays_small_and_deletes_only_its_own_files(tmp_path: Path) -> None:
    folder = tmp_path / "thumbnails"
    folder.mkdir()
    foreign = folder / "holiday.png"
    foreign.write_bytes(_png())
    left = folder / ".part-abc123.png"  # a write cut short by a crash
    left.write_bytes(b"half")
    os.utime(left, (time.time() - 3600,) * 2)
    store = SidecarStore(folder, limit=60_000)
    rng = np.random.default_rng(1)
    from studio.ui.qt_images import array_to_qimage

    for number in range(30):  # about 28 KB each
        image = array_to_qimage(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8))
        store.put(f"{number:040x}", image)
        own = [f for f in folder.iterdir() if f not in (foreign, left)]
        assert sum(f.stat().st_size for f in own) <= 60_000
        assert not [f for f in own if f.name.startswith(".part-")]  # written whole
    assert foreign.read_bytes() == _png()
    assert not left.exists()
    assert store.get(f"{29:040x}") is not None  # the newest is kept


# -- the index ------------------------------------------------------------------------------


def _consistent(model: GalleryModel) -> list[Path]:
    paths = model.paths()
    assert model.rowCount() == len(paths)
    for row, path in enumerate(paths):
        assert model.key_at(row) == str(path)
        assert model.row_of(path) == row
        assert model.index_of(path).row() == row
    return paths


def test_the_index_stays_right_through_adds_and_removes(qtbot, tmp_path):  # noqa: ANN001
    listed = _folder(tmp_path / "outputs", 30)
    model = GalleryModel(tmp_path / "outputs", thumbnail_cache=tmp_path / "thumbnails")
    try:
        with qtbot.waitSignal(model.listingFinished, timeout=5000):
            model.reload()
        expected = listed[::-1]
        assert _consistent(model) == expected
        added = [tmp_path / f"new-{n}.png" for n in range(6)]
        model.add(added[:2])
        model.add(added[2:5])
        model.add([added[5], added[0]])  # one already there: not twice
        expected = [added[5], *added[2:5], *added[:2], *expected]
        assert _consistent(model) == expected
        for gone in (listed[12], added[3], listed[0], added[5], added[2], listed[29]):
            model.remove(gone)
            expected.remove(gone)
            assert _consistent(model) == expected
        model.remove(listed[12])  # not there any more: nothing happens
        assert _consistent(model) == expected
    finally:
        model.shutdown()


class _NoSearching(list):
    """A list that fails any search through it: per-image work must use the index."""

    def _searched(self, *_args: object) -> None:
        raise AssertionError("a linear search through the gallery's rows")

    index = count = remove = __contains__ = __iter__ = __reversed__ = _searched  # type: ignore[assignment]


def test_per_image_work_never_searches_the_rows(qtbot, make_panel, tmp_path):  # noqa: ANN001
    paths = _folder(tmp_path / "outputs", 1200)
    panel = _listed(qtbot, make_panel(tmp_path / "outputs"))
    model = panel.model
    model._listed = _NoSearching(model._listed)
    model._added = _NoSearching(model._added)
    new = _folder(tmp_path / "more", 3)
    for path in new:
        panel.add([path])  # each goes first
    assert model.row_of(new[-1]) == 0 and model.row_of(paths[-1]) == 3
    panel.select(paths[500])
    _in_view_shown(qtbot, panel)  # every finished thumbnail found its row by the index
    assert panel.selected_path() == paths[500]
    panel.model.remove(new[0])
    assert model.row_of(paths[-1]) == 2


def test_branches_are_listed_under_their_parents(tmp_path: Path) -> None:
    """A branch (saved as PARENT-stepK.png, core.saving) comes right after its parent,
    however much newer it is; the rest stays newest first."""
    names = [  # oldest first
        "cat.png",
        "dog.png",
        "cat-step3.png",
        "bird.png",
        "cat-step3-step5.png",
        "cat-step3-1.png",
        "lonely-step2.png",  # its parent is not here: kept in its place
    ]
    for age, name in enumerate(names):
        path = tmp_path / name
        Image.new("RGB", (4, 4)).save(path)
        os.utime(path, (1_000_000 + age, 1_000_000 + age))
    listed = [Path(p).name for p in gallery_listing.scan_images(tmp_path)]
    assert listed == [
        "lonely-step2.png",
        "bird.png",
        "dog.png",
        "cat.png",
        "cat-step3-1.png",
        "cat-step3.png",
        "cat-step3-step5.png",
    ]
