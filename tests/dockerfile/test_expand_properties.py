"""Laws of shell-word expansion, checked on generated words and values."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kiln.dockerfile.expand import expand_word, expand_words

SPECIAL = set("$'\"\\")
plain_text = st.text(alphabet=st.characters(blacklist_characters=sorted(SPECIAL), blacklist_categories=["Cs"]))
any_value = st.text(alphabet=st.characters(blacklist_categories=["Cs"]))
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
literal = st.text(alphabet="abcxyz019-._ ", max_size=8)
word_literal = st.text(alphabet="abcxyz019", min_size=1, max_size=4)


@given(plain_text)
def test_words_without_specials_are_unchanged(s: str) -> None:
    assert expand_word(s, {"A": "1"}) == s


@given(plain_text)
def test_words_split_like_go_fields(s: str) -> None:
    go_space = " \t\n\v\f\r\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    go_space += "\u2028\u2029\u202f\u205f\u3000"
    expected = "".join(" " if ch in go_space else ch for ch in s).split(" ")
    assert expand_words(s, {}) == [w for w in expected if w]


@given(st.text(alphabet=st.characters(blacklist_characters=["'"], blacklist_categories=["Cs"])))
def test_single_quotes_protect_everything(v: str) -> None:
    assert expand_word(f"'{v}'", {"A": "1"}) == v
    assert expand_words(f"'{v}'", {"A": "1"}) == ([v] if v else [])


@given(any_value)
def test_escaping_every_character_gives_it_back(v: str) -> None:
    assert expand_word("".join("\\" + ch for ch in v), {"A": "1"}) == v


@given(names, any_value)
def test_variable_value_is_not_reprocessed(name: str, value: str) -> None:
    env = {name: value}
    assert expand_word(f"${{{name}}}", env) == value
    assert expand_word(f'"${{{name}}}"', env) == value
    assert expand_words(f'"${{{name}}}"', env) == ([value] if value else [])


@given(names, st.one_of(st.none(), any_value), literal)
def test_default_laws(name: str, value: str | None, w: str) -> None:
    env = {} if value is None else {name: value}
    colon_dash = expand_word(f"${{{name}:-{w}}}", env)
    dash = expand_word(f"${{{name}-{w}}}", env)
    colon_plus = expand_word(f"${{{name}:+{w}}}", env)
    plus = expand_word(f"${{{name}+{w}}}", env)
    assert colon_dash == (value if value else w)
    assert dash == (w if value is None else value)
    assert colon_plus == (w if value else "")
    assert plus == ("" if value is None else w)


@given(names, st.text(alphabet="abcxyz019", max_size=12), word_literal)
def test_trim_literal_prefix_and_suffix(name: str, value: str, p: str) -> None:
    env = {name: value}
    assert expand_word(f"${{{name}#{p}}}", env) == value.removeprefix(p)
    assert expand_word(f"${{{name}##{p}}}", env) == value.removeprefix(p)
    assert expand_word(f"${{{name}%{p}}}", env) == value.removesuffix(p)
    assert expand_word(f"${{{name}%%{p}}}", env) == value.removesuffix(p)


@given(names, st.text(alphabet="abcxyz019", max_size=12), word_literal, st.text(alphabet="abq", max_size=3))
def test_replace_literal(name: str, value: str, p: str, r: str) -> None:
    env = {name: value}
    assert expand_word(f"${{{name}//{p}/{r}}}", env) == value.replace(p, r)
    assert expand_word(f"${{{name}/{p}/{r}}}", env) == value.replace(p, r, 1)


@given(names, st.text(alphabet="ab/.", max_size=12))
def test_trim_wildcards_agree_with_shortest_and_longest(name: str, value: str) -> None:
    env = {name: value}
    # ${v#*/} drops up to the first /, ${v##*/} up to the last; ${v%/*} from the last /, ${v%%/*} from the first.
    first, last = value.find("/"), value.rfind("/")
    assert expand_word(f"${{{name}#*/}}", env) == (value[first + 1 :] if first >= 0 else value)
    assert expand_word(f"${{{name}##*/}}", env) == (value[last + 1 :] if last >= 0 else value)
    assert expand_word(f"${{{name}%/*}}", env) == (value[:last] if last >= 0 else value)
    assert expand_word(f"${{{name}%%/*}}", env) == (value[:first] if first >= 0 else value)
