"""Each console page shows what the JSON API's ops answer, in a real browser."""

from __future__ import annotations

import re
import time
from urllib.parse import quote

from tests.helpers import wait_until
from tests.integration.console.conftest import Console, Shop, number


def test_segments_page_shows_every_segment_with_the_size_segments_gives(console: Console, shop: Shop):
    page = console.open("segments")
    want = {s["name"]: s["size"] for s in shop.api("/api/segments")["segments"]}
    rows = page.locator("table.segments tbody tr")
    got = {
        rows.nth(i).get_attribute("data-segment"): number(rows.nth(i).locator("td.size .n").inner_text())
        for i in range(rows.count())
    }
    assert got == want


def test_segments_page_shows_each_description(console: Console, shop: Shop):
    page = console.open("segments")
    for s in shop.api("/api/segments")["segments"]:
        assert page.locator(f'tr[data-segment="{s["name"]}"] .desc').inner_text() == s["description"]


def test_segments_page_sorts_by_size_largest_first(console: Console, shop: Shop):
    page = console.open("segments?sort=size")
    sizes = [number(t) for t in page.locator("table.segments tbody tr td.size .n").all_inner_texts()]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) > 1


def test_segments_filter_keeps_only_matching_segments(console: Console, shop: Shop):
    page = console.open("segments")
    page.fill("#seg-filter", "purchase")
    visible = page.locator("table.segments tbody tr:not([hidden])")
    want = {
        s["name"]
        for s in shop.api("/api/segments")["segments"]
        if "purchase" in s["name"] or "purchase" in s["description"].lower()
    }
    assert want and {visible.nth(i).get_attribute("data-segment") for i in range(visible.count())} == want


def test_segments_change_over_a_day_is_what_sizes_gives(console: Console, shop: Shop):
    page = console.open("segments")
    row = page.locator('tr[data-segment="new_visitor"]')
    now = shop.api("/api/stats")["clock"]
    points = shop.api(f"/api/segments/new_visitor/sizes?since={now - 86400}&until={now}&step=86400")["points"]
    size = {s["name"]: s["size"] for s in shop.api("/api/segments")["segments"]}["new_visitor"]
    # the whole workload happened within the day: the day's change is the size itself
    assert number(row.locator("td.d1d").inner_text()) == points[-1][1] - points[0][1] == size > 0


def test_segment_chart_has_the_points_sizes_gives_for_its_range(console: Console, shop: Shop):
    page = console.open("segment/new_visitor?range=15m")
    got = page.evaluate(
        """() => {
          const card = document.getElementById('size-chart');
          const chart = Chart.getChart(card.querySelector('canvas'));
          return {since: card.dataset.since, until: card.dataset.until, step: card.dataset.step,
                  points: chart.data.datasets[0].data.map(p => [p.x / 1000, p.y])};
        }"""
    )
    want = shop.api(
        f"/api/segments/new_visitor/sizes?since={got['since']}&until={got['until']}&step={got['step']}"
    )
    assert len(got["points"]) > 100 and got["points"] == want["points"]


def test_segment_page_shows_its_definition(console: Console, shop: Shop):
    page = console.open("segment/electronics_fans")
    assert page.locator("#seg-when").inner_text() == "views_electronics_7d >= 3"


def test_new_transitions_appear_on_a_segment_page_within_2_s(console: Console, shop: Shop):
    page = console.open("segment/electronics_fans")
    page.wait_for_selector(".live-state.live", timeout=10000)
    page.evaluate("window.__sameDocument = true")
    user = f"live-{time.time_ns()}"
    with shop.client() as c:
        for _ in range(3):
            c.track(user, "view", {"category": "electronics", "price": 99.0})
    page.wait_for_selector(f'#live li[data-user="{user}"][data-kind="enter"]', timeout=2000)
    assert page.evaluate("window.__sameDocument") is True  # no reload


def test_members_at_a_past_time_equal_segment_at(console: Console, shop: Shop):
    page = console.open("segment/new_visitor")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(shop.mid))  # the tab runs in UTC
    page.fill("#members-at", stamp)
    page.click("#at-form button[type=submit]")
    page.wait_for_selector(f'#members[data-at="{shop.mid}"]', timeout=10000)
    want = shop.api(f"/api/segments/new_visitor?at={shop.mid}&limit=60")
    now = shop.api("/api/segments/new_visitor?limit=60")
    assert want["size"] != now["size"], "the workload's second phase should have moved new_visitor"
    assert number(page.locator("#members-head strong").inner_text()) == want["size"]
    assert page.locator("#members li a").all_inner_texts() == want["members"]


def test_members_next_page_is_the_page_after_the_cursor(console: Console, shop: Shop):
    page = console.open("segment/new_visitor")
    first = shop.api("/api/segments/new_visitor?limit=60")
    page.click("#members-next")
    want = shop.api(f"/api/segments/new_visitor?limit=60&after={quote(first['next'])}")
    wait_until(lambda: page.locator("#members li a").all_inner_texts() == want["members"], 10, what="page 2")


def test_campaigns_page_shows_the_numbers_campaigns_gives(console: Console, shop: Shop):
    page = console.open("campaigns")

    def shown() -> dict[tuple[str, str], dict[str, int]]:
        out = {}
        for card in page.locator("section.campaign").all():
            name = card.get_attribute("data-campaign")
            for row in card.locator("tbody tr").all():
                cells = {c.get_attribute("data-field"): c for c in row.locator("td[data-field]").all()}
                out[(name, row.get_attribute("data-variant"))] = {
                    f: number(cells[f].inner_text().split("\n")[0])
                    for f in ("assigned", "sent", "pending", "suppressed", "dead", "conversions")
                    if f in cells
                }
        return out

    def expected() -> dict[tuple[str, str], dict[str, int]]:
        out = {}
        for c in shop.api("/api/campaigns")["campaigns"]:
            for v in c["variants"]:
                row = {f: v[f] for f in ("assigned", "sent", "pending", "dead")}
                row["suppressed"] = sum(v["suppressed"].values())
                if c["goal"]:
                    row["conversions"] = v["conversions"]
                out[(c["campaign"], v["variant"])] = row
        return out

    # Channel workers go on delivering for a moment; the page refreshes every 5 s.
    wait_until(lambda: shown() == expected(), 30, what=lambda: f"{shown()} == {expected()}")
    assert any(row["sent"] for row in expected().values())


def test_campaigns_page_compares_each_variant_with_the_holdout(console: Console, shop: Shop):
    page = console.open("campaigns")
    deals = page.locator('section.campaign[data-campaign="electronics_deals"]')
    cells = deals.locator('tbody tr:not(.holdout) td[data-field="diff"]').all_inner_texts()
    assert len(cells) == 2 and all(
        re.fullmatch(r"[+−±]\d+\.\d\d pp [+−±]\d+\.\d\d pp to [+−±]\d+\.\d\d pp", c) for c in cells
    )


def test_rule_editor_shows_the_size_preview_gives_as_you_type(console: Console, shop: Shop):
    page = console.open("rules?when=", page="rules")
    page.locator("#rule").press_sequentially("views_7d >= 2", delay=30)
    want = shop.api("/api/preview", {"when": "views_7d >= 2"})
    page.wait_for_selector('main[data-previewed="views_7d >= 2"]', timeout=10000)
    assert number(page.locator("#preview-size").inner_text()) == want["size"] > 0
    assert page.locator("#preview-sample a").all_inner_texts() == want["sample"]


def test_rule_editor_shows_the_overlap_preview_gives(console: Console, shop: Shop):
    text = "views_7d >= 1 and purchases == 0"
    page = console.open(f"rules?when={quote(text)}", page="rules")
    page.wait_for_selector(f'main[data-previewed="{text}"]', timeout=10000)
    want = {k: n for k, n in shop.api("/api/preview", {"when": text})["overlap"].items() if n}
    rows = page.locator("#preview-overlap tr").all()
    assert (
        want
        and {r.get_attribute("data-segment"): number(r.locator("td").first.inner_text()) for r in rows}
        == want
    )


def test_rule_editor_shows_a_broken_expression_error_at_its_position(console: Console, shop: Shop):
    console.guard.expect("/api/preview")  # each incomplete prefix typed is a 400 too
    page = console.open("rules?when=", page="rules")
    text = "views_7d >= 2 and (carts_1d >"
    page.locator("#rule").press_sequentially(text, delay=20)
    err = shop.api_error("/api/preview", {"when": text})
    page.wait_for_selector("#rule-error-message", timeout=10000)
    wait_until(
        lambda: page.locator("#rule-error-message").inner_text() == err["message"], 10, what="the error"
    )
    column = int(re.search(r"column (\d+)", err["message"]).group(1))
    assert page.locator("#rule-error-at").get_attribute("data-offset") == str(column - 1)
    assert page.locator("#rule").get_attribute("aria-invalid") == "true"


def test_user_page_shows_the_users_segments_and_traits(console: Console, shop: Shop):
    page = console.open(f"user/{shop.user}")
    want = shop.api(f"/api/users/{shop.user}")
    assert page.locator("#user-segments a").all_inner_texts() == want["segments"]
    shown = dict(
        zip(
            page.locator("#user-traits dt").all_inner_texts(),
            page.locator("#user-traits dd").all_inner_texts(),
            strict=True,
        )
    )
    assert shown == {k: str(v) for k, v in want["traits"].items()}


def test_user_page_shows_the_users_history(console: Console, shop: Shop):
    page = console.open(f"user/{shop.user}")
    want = shop.api(f"/api/users/{shop.user}/history")["transitions"]
    shown = page.locator("#user-history li").all()
    assert [(li.get_attribute("class"), li.locator("a").inner_text()) for li in shown] == [
        (t["kind"], t["segment"]) for t in reversed(want)
    ]


def test_user_page_says_when_a_user_was_never_seen(console: Console, shop: Shop):
    console.guard.expect("/api/users/nobody-at-all")
    page = console.open("user/nobody-at-all")
    assert "never seen" in page.locator(".alert").inner_text()


def test_health_page_shows_applied_seq_and_lag(console: Console, shop: Shop):
    page = console.open("health")
    stats = shop.api("/api/stats")
    assert number(page.locator("#health-applied").inner_text()) == stats["applied_seq"]
    assert number(page.locator("#health-lag").inner_text()) == stats["lag"] == 0
