import pytest

from course_lib.report import headline, scale_config


def test_scale_config_picks_one_scale():
    cfg = scale_config("laptop", smoke=dict(n=1), laptop=dict(n=10), full=dict(n=100))
    assert (cfg.scale, cfg.n) == ("laptop", 10)


def test_scale_config_errors():
    with pytest.raises(ValueError, match="unknown SCALE 'big'"):
        scale_config("big", smoke={}, laptop={}, full={})
    with pytest.raises(ValueError, match="missing: \\['full'\\]"):
        scale_config("smoke", smoke={}, laptop={})
    with pytest.raises(ValueError, match="same keys"):
        scale_config("smoke", smoke=dict(a=1), laptop=dict(b=1), full=dict(a=1))


def test_headline_outside_a_notebook_prints(capsys):
    headline("NDCG@10 = 0.18", ndcg=0.18)
    assert "Headline: NDCG@10 = 0.18" in capsys.readouterr().out
