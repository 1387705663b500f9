import pytest

pytestmark = pytest.mark.browser


def test_home_loads(dashboard, page, shot):
    url, home = dashboard
    page.goto(url)
    page.get_by_text("TuneLab").first.wait_for()
    shot(page, "00-home")
