"""DEPARTMENTS_FILE: the sample covers the registry, regions match loosely, a bad file is refused clearly."""

from __future__ import annotations

import csv
import unicodedata
from pathlib import Path

import pytest
from hypothesis import event as statistic
from hypothesis import given
from hypothesis import strategies as st

from bot.core.departments import (
    FALLBACK_KEY,
    Department,
    Departments,
    DepartmentsError,
    _fold,
)

ROOT = Path(__file__).parents[1]
SAMPLE = ROOT / "departments.example.toml"
REGISTRY = ROOT / "storage" / "sample_registry.csv"
STAFF_CHAT = -1009999999999
SOURCE = "test-departments.toml"

EXPECTED = {
    "Xətai": "baki",
    "Yasamal": "baki",
    "Nəsimi": "baki",
    "Binəqədi": "baki",
    "Gəncə": "gence",
    "Mingəçevir": "gence",
    "Şəki": "gence",
    "Sumqayıt": "simal",
    "Quba": "simal",
    "Lənkəran": "cenub",
}


def sample(fallback_chat_id: int | None = STAFF_CHAT) -> Departments:
    return Departments.load(SAMPLE, fallback_chat_id)


def registry_regions() -> set[str]:
    with REGISTRY.open(encoding="utf-8", newline="") as f:
        return {row["region"] for row in csv.DictReader(f)}


# The sample file and lookups


def test_the_sample_loads_with_four_departments() -> None:
    departments = sample()
    assert [d.key for d in departments] == ["baki", "gence", "simal", "cenub"]
    assert len(departments) == 4
    assert [d.chat_id for d in departments] == [
        -1001000000001,
        -1001000000002,
        -1001000000003,
        -1001000000004,
    ]
    baki = departments.by_key("baki")
    assert baki is not None
    assert baki.names == {
        "az": "Bakı Elektrik Şəbəkəsi",
        "ru": "Бакинская электрическая сеть",
        "en": "Baku Electric Network",
    }
    assert baki.staff == frozenset({100001, 100002})
    assert baki.regions == ("Xətai", "Yasamal", "Nəsimi", "Binəqədi")
    assert baki.admins_may_act is False and baki.lang == "az"
    every_staff = [s for d in departments for s in d.staff]
    assert len(every_staff) == len(set(every_staff)) == 8


def test_every_region_of_the_sample_registry_has_a_real_department() -> None:
    departments = sample()
    regions = registry_regions()
    assert regions == set(EXPECTED)
    for region in regions:
        department = departments.for_region(region)
        assert department is not None and department.key != FALLBACK_KEY, region
        assert department.key == EXPECTED[region]
        assert department is departments.by_key(EXPECTED[region])


def test_the_sample_names_are_azerbaijani() -> None:
    names = {d.key: d.name("az") for d in sample()}
    assert names == {
        "baki": "Bakı Elektrik Şəbəkəsi",
        "gence": "Gəncə Regional Elektrik Şəbəkəsi",
        "simal": "Şimal Regional Elektrik Şəbəkəsi",
        "cenub": "Cənub Regional Elektrik Şəbəkəsi",
    }


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Xətai", "baki"),
        ("XƏTAİ", "baki"),
        ("xətai", "baki"),
        (" Xətai ", "baki"),
        ("\tXƏTAİ\n", "baki"),
        ("ŞƏKİ", "gence"),
        ("şəki", "gence"),
        ("SUMQAYIT", "simal"),
        ("sumqayıt", "simal"),
        ("BİNƏQƏDİ", "baki"),
        ("MİNGƏÇEVİR", "gence"),
        ("lənkəran", "cenub"),
        (unicodedata.normalize("NFD", "Nəsimi"), "baki"),
        (unicodedata.normalize("NFD", "ŞƏKİ"), "gence"),
        ("Xətai".upper().lower(), "baki"),  # Python's own İ → i̇ must still match
    ],
)
def test_for_region_ignores_case_spacing_and_normal_form(text: str, key: str) -> None:
    department = sample().for_region(text)
    assert department is not None and department.key == key


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("XƏTAİ", "xətai"),
        ("İ", "i"),
        ("I", "ı"),
        ("SUMQAYIT", "sumqayıt"),
        ("  Quba   rayonu ", "quba rayonu"),
        ("i\u0307", "i"),
        ("Ə Ş Ç Ğ Ö Ü", "ə ş ç ğ ö ü"),
    ],
)
def test_fold_follows_azerbaijani_case(text: str, folded: str) -> None:
    assert _fold(text) == folded


def test_dotless_and_dotted_i_stay_different() -> None:
    departments = sample()
    assert departments.for_region("Sumqayit") is departments.fallback  # i is not ı in Azerbaijani
    assert _fold("XƏTAI") != _fold("Xətai")


@pytest.mark.parametrize("region", ["Naxçıvan", "", "   ", None, "Xətai rayonu"])
def test_an_unknown_region_goes_to_the_fallback_department(region: str | None) -> None:
    department = sample().for_region(region)
    assert department is not None
    assert department.key == FALLBACK_KEY and department.chat_id == STAFF_CHAT
    assert department.regions == ()


@pytest.mark.parametrize("region", ["Naxçıvan", "", None])
def test_without_staff_chat_id_an_unknown_region_has_no_department(region: str | None) -> None:
    departments = sample(None)
    assert departments.for_region(region) is None
    assert departments.fallback is None
    assert departments.for_region("Xətai") is departments.by_key("baki") is not None


def test_by_chat_by_key_and_chats() -> None:
    departments = sample()
    for department in departments:
        assert departments.by_chat(department.chat_id) is department
        assert departments.by_key(department.key) is department
    fallback = departments.by_chat(STAFF_CHAT)
    assert fallback is not None and fallback.key == FALLBACK_KEY
    assert departments.by_key(FALLBACK_KEY) is fallback
    assert departments.by_chat(-1001000000009) is None
    assert departments.by_chat(100001) is None
    assert departments.by_key("nowhere") is None
    assert departments.chats == frozenset(
        {-1001000000001, -1001000000002, -1001000000003, -1001000000004, STAFF_CHAT}
    )
    without = sample(None)
    assert without.chats == frozenset({-1001000000001, -1001000000002, -1001000000003, -1001000000004})
    assert without.by_key(FALLBACK_KEY) is None and without.by_chat(STAFF_CHAT) is None


def test_iteration_and_len_leave_out_the_fallback() -> None:
    departments = sample()
    assert FALLBACK_KEY not in {d.key for d in departments}
    assert len(departments) == len(list(departments)) == 4


def test_the_fallback_department() -> None:
    fallback = sample().fallback
    assert fallback is not None
    assert fallback.names == {
        "az": "Texniki xidmət şöbəsi",
        "ru": "Отдел технического обслуживания",
        "en": "Technical service department",
    }
    assert fallback.staff == frozenset(range(100001, 100009))
    assert fallback.admins_may_act is False and fallback.lang == "az" and fallback.regions == ()


def test_fallback_staff_and_admins_from_the_file() -> None:
    text = "fallback_staff = [555, 100001]\nfallback_admins_may_act = true\n" + dept("a", staff="[1, 2]")
    departments = Departments.parse(text, STAFF_CHAT)
    fallback = departments.fallback
    assert fallback is not None
    assert fallback.staff == frozenset({1, 2, 555, 100001})
    assert fallback.admins_may_act is True
    a = departments.by_key("a")
    assert a is not None and a.staff == frozenset({1, 2}) and a.admins_may_act is False


def test_a_department_sharing_the_fallback_chat_wins_by_chat() -> None:
    departments = Departments.load(SAMPLE, -1001000000002)
    gence = departments.by_key("gence")
    assert departments.by_chat(-1001000000002) is gence
    fallback = departments.for_region("Naxçıvan")
    assert fallback is not None and fallback.key == FALLBACK_KEY and fallback is departments.fallback
    assert fallback.chat_id == -1001000000002
    assert departments.by_key(FALLBACK_KEY) is fallback
    assert departments.chats == frozenset({-1001000000001, -1001000000002, -1001000000003, -1001000000004})


def test_name_falls_back_to_azerbaijani() -> None:
    simal = sample().by_key("simal")
    assert simal is not None
    assert simal.name("az") == "Şimal Regional Elektrik Şəbəkəsi"
    assert simal.name("ru") == "Северная региональная электрическая сеть"
    assert simal.name("en") == "Northern Regional Electric Network"
    assert simal.name("tr") == "Şimal Regional Elektrik Şəbəkəsi"
    only_az = Department("x", {"az": "Şöbə"}, -1, frozenset({1}), ("Quba",))
    assert only_az.name("en") == "Şöbə"


def test_a_department_is_immutable_and_hashable() -> None:
    baki = sample().by_key("baki")
    assert baki is not None
    assert len({baki, baki}) == 1
    with pytest.raises(TypeError):
        baki.names["az"] = "changed"  # type: ignore[index]


def test_no_file_means_only_the_fallback() -> None:
    departments = Departments.load(None, STAFF_CHAT)
    assert len(departments) == 0 and list(departments) == []
    assert departments.chats == frozenset({STAFF_CHAT})
    fallback = departments.for_region("Xətai")
    assert fallback is not None and fallback.key == FALLBACK_KEY and fallback.staff == frozenset()
    nothing = Departments.load(None, None)
    assert nothing.for_region("Xətai") is None and nothing.chats == frozenset()


def test_the_constructor_refuses_contradictions() -> None:
    a = Department("a", {"az": "A", "ru": "A", "en": "A"}, -1, frozenset({1}), ("Quba",))
    b = Department("b", {"az": "B", "ru": "B", "en": "B"}, -2, frozenset({2}), ("QUBA",))
    with pytest.raises(ValueError, match="'QUBA' is served by departments 'a' and 'b'"):
        Departments([a, b], None)
    with pytest.raises(ValueError, match="chat -1 belongs to departments 'a' and 'c'"):
        Departments([a, Department("c", a.names, -1, frozenset({3}), ("Şəki",))], None)


# Reading the file


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    with pytest.raises(DepartmentsError, match="cannot be read") as caught:
        Departments.load(path, None)
    assert str(path) in str(caught.value) and "DEPARTMENTS_FILE" in str(caught.value)


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DepartmentsError, match="cannot be read") as caught:
        Departments.load(tmp_path, None)
    assert str(tmp_path) in str(caught.value)


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cp1254.toml"
    path.write_bytes(SAMPLE.read_text(encoding="utf-8").encode("cp1254", errors="replace"))
    with pytest.raises(DepartmentsError, match="not UTF-8") as caught:
        Departments.load(path, None)
    assert str(path) in str(caught.value)


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + SAMPLE.read_bytes())
    assert len(Departments.load(path, None)) == 4


def test_load_names_the_file_in_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "departments.toml"
    path.write_text(dept("baki", chat_id="0"), encoding="utf-8")
    with pytest.raises(DepartmentsError) as caught:
        Departments.load(path, None)
    assert str(caught.value) == f'DEPARTMENTS_FILE {path}: department "baki": chat_id must not be 0'


# Validation

BASE = {
    "name": '{ az = "Quba şöbəsi", ru = "Кубинский отдел", en = "Quba department" }',
    "chat_id": "-1001000000005",
    "staff": "[100001]",
    "regions": '["Quba"]',
}


def dept(key: str = "quba", **fields: str | None) -> str:
    """A [departments.<key>] table: BASE with fields changed (raw TOML), or dropped when None."""
    values = {**BASE, **fields}
    lines = [f"[departments.{key}]"] + [
        f"{name} = {value}" for name, value in values.items() if value is not None
    ]
    return "\n".join(lines) + "\n"


def refused(text: str) -> DepartmentsError:
    with pytest.raises(DepartmentsError) as caught:
        Departments.parse(text, STAFF_CHAT, SOURCE)
    return caught.value


NAME_101 = "Ş" * 101

BAD_DEPARTMENTS = [
    ("unknown-key", dept(chatid="-1"), "quba", ['unknown key "chatid"', "did you mean chat_id"]),
    ("unknown-key-far", dept(colour='"blue"'), "quba", ['unknown key "colour"', "allowed: name, chat_id"]),
    ("key-uppercase", dept('"Quba"'), "Quba", ["a-z, 0-9"]),
    ("key-azerbaijani", dept('"şəki"'), "şəki", ["a-z, 0-9"]),
    ("key-space", dept('"quba rayonu"'), "quba rayonu", ["a-z, 0-9"]),
    ("key-too-long", dept("q" * 33), "q" * 33, ["1-32 characters"]),
    ("key-default", dept("default"), "default", ["reserved"]),
    ("name-missing", dept(name=None), "quba", ["name is missing"]),
    ("name-not-table", dept(name='"Quba"'), "quba", ["name must be a table", '"Quba"']),
    ("name-without-ru", dept(name='{ az = "Quba", en = "Quba" }'), "quba", ["name.ru is missing"]),
    ("name-empty-az", dept(name='{ az = " ", ru = "Куба", en = "Quba" }'), "quba", ["name.az is empty"]),
    (
        "name-not-text",
        dept(name='{ az = 5, ru = "Куба", en = "Quba" }'),
        "quba",
        ["name.az must be text", "5"],
    ),
    (
        "name-too-long",
        dept(name=f'{{ az = "Quba", ru = "Куба", en = "{NAME_101}" }}'),
        "quba",
        ["name.en is longer than 100"],
    ),
    (
        "name-extra-language",
        dept(name='{ az = "Quba", ru = "Куба", en = "Quba", tr = "Kuba" }'),
        "quba",
        ['unknown language "tr"'],
    ),
    ("chat-missing", dept(chat_id=None), "quba", ["chat_id is missing"]),
    (
        "chat-text",
        dept(chat_id='"-1001000000005"'),
        "quba",
        ["chat_id must be an integer", '"-1001000000005"'],
    ),
    ("chat-bool", dept(chat_id="true"), "quba", ["chat_id must be an integer", "true"]),
    ("chat-float", dept(chat_id="-100.5"), "quba", ["chat_id must be an integer", "-100.5"]),
    ("chat-zero", dept(chat_id="0"), "quba", ["chat_id must not be 0"]),
    ("staff-missing", dept(staff=None), "quba", ["staff is missing"]),
    ("staff-not-list", dept(staff="100001"), "quba", ["staff must be a list"]),
    ("staff-negative", dept(staff="[100001, -5]"), "quba", ["staff must hold positive integers", "-5"]),
    ("staff-zero", dept(staff="[0]"), "quba", ["staff must hold positive integers", "0"]),
    ("staff-text", dept(staff='["100001"]'), "quba", ["staff must hold positive integers", '"100001"']),
    ("staff-bool", dept(staff="[true]"), "quba", ["staff must hold positive integers", "true"]),
    ("staff-empty", dept(staff="[]"), "quba", ["staff is empty", "admins_may_act"]),
    ("staff-empty-admins-false", dept(staff="[]", admins_may_act="false"), "quba", ["staff is empty"]),
    ("regions-missing", dept(regions=None), "quba", ["regions is missing"]),
    ("regions-not-list", dept(regions='"Quba"'), "quba", ["regions must be a list", '"Quba"']),
    ("regions-empty", dept(regions="[]"), "quba", ["regions is empty"]),
    ("regions-empty-name", dept(regions='["Quba", ""]'), "quba", ["empty region name"]),
    ("regions-blank-name", dept(regions='["Quba", "  "]'), "quba", ["empty region name"]),
    ("regions-number", dept(regions='["Quba", 7]'), "quba", ["regions must hold region names", "7"]),
    ("regions-twice", dept(regions='["Quba", " QUBA"]'), "quba", ['region " QUBA" is listed twice']),
    ("lang-unknown", dept(lang='"tr"'), "quba", ["lang must be one of az, ru, en", '"tr"']),
    ("lang-not-text", dept(lang="1"), "quba", ["lang must be one of az, ru, en", "1"]),
    ("admins-text", dept(admins_may_act='"yes"'), "quba", ["admins_may_act must be true or false", '"yes"']),
    ("admins-number", dept(admins_may_act="1"), "quba", ["admins_may_act must be true or false", "1"]),
    ("not-a-table", 'departments.quba = "Quba"\n', "quba", ["must be a table", '"Quba"']),
]


@pytest.mark.parametrize(
    ("text", "key", "fragments"), [c[1:] for c in BAD_DEPARTMENTS], ids=[c[0] for c in BAD_DEPARTMENTS]
)
def test_a_bad_department_is_refused_naming_it(text: str, key: str, fragments: list[str]) -> None:
    error = refused(text)
    assert len(error.problems) == 1, error.problems
    line = str(error)
    assert "\n" not in line
    assert line.startswith(f'{SOURCE}: department "{key}": ')
    for fragment in fragments:
        assert fragment in line


BAD_FILES = [
    ("not-toml", "[departments.quba\nchat_id = 1\n", ["not valid TOML", "line 1"]),
    ("not-toml-value", dept(chat_id="-100 100"), ["not valid TOML", "line 3"]),
    ("no-departments", "fallback_staff = [1]\n", ["no [departments] table"]),
    ("empty-file", "", ["no [departments] table"]),
    ("empty-departments", "[departments]\n", ["[departments] is empty"]),
    ("departments-not-table", "departments = [1]\n", ["departments must be a table"]),
    (
        "unknown-top-level",
        "departmnets = 1\n" + dept(),
        ['unknown top-level key "departmnets"', "departments?"],
    ),
    (
        "fallback-staff-bad",
        "fallback_staff = [-1]\n" + dept(),
        ["fallback_staff must hold positive integers"],
    ),
    ("fallback-staff-not-list", "fallback_staff = 1\n" + dept(), ["fallback_staff must be a list"]),
    ("fallback-admins-bad", 'fallback_admins_may_act = "no"\n' + dept(), ["fallback_admins_may_act must be"]),
]


@pytest.mark.parametrize(("text", "fragments"), [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_a_bad_file_is_refused(text: str, fragments: list[str]) -> None:
    error = refused(text)
    assert len(error.problems) == 1, error.problems
    assert str(error).startswith(f"{SOURCE}: ")
    for fragment in fragments:
        assert fragment in str(error)


def test_a_region_in_two_departments_names_both() -> None:
    text = dept("birinci", regions='["Xətai", "Quba"]') + dept("ikinci", chat_id="-2", regions='["XƏTAİ "]')
    error = refused(text)
    assert error.problems == (
        'department "ikinci": region "XƏTAİ" is already served by department "birinci"',
    )


def test_a_chat_in_two_departments_names_both() -> None:
    text = dept("birinci") + dept("ikinci", regions='["Şəki"]')
    error = refused(text)
    assert error.problems == (
        'department "ikinci": chat_id -1001000000005 is already the staff chat of department "birinci"',
    )


@pytest.mark.parametrize(
    ("fields", "staff", "admins"),
    [
        ({"staff": "[]", "admins_may_act": "true"}, frozenset(), True),
        ({"staff": None, "admins_may_act": "true"}, frozenset(), True),
        ({"staff": "[7, 7, 8]"}, frozenset({7, 8}), False),
    ],
)
def test_staff_may_be_empty_when_admins_may_act(
    fields: dict[str, str | None], staff: frozenset[int], admins: bool
) -> None:
    department = Departments.parse(dept("quba", **fields), None).by_key("quba")
    assert department is not None
    assert department.staff == staff and department.admins_may_act is admins


def test_optional_keys_are_read() -> None:
    department = Departments.parse(dept(lang='"ru"', chat_id="42"), None).by_key("quba")
    assert department is not None and department.lang == "ru" and department.chat_id == 42


def test_every_problem_of_a_file_is_reported() -> None:
    text = (
        "extra = true\n"
        + dept("birinci", chat_id='"x"', staff="[-1]")
        + dept("IKINCI", regions="[]", lang='"de"')
        + dept("ucuncu", chat_id="-7", regions='[" quba"]', name='{ az = "Üçüncü" }')
        + dept("dorduncu", chat_id="-7", regions='["Şəki"]', staff="[1, 2.5]")
    )
    error = refused(text)
    expected = [
        'unknown top-level key "extra"',
        'department "birinci": chat_id must be an integer',
        'department "birinci": staff must hold positive integers',
        'department "IKINCI": the key must be',
        'department "IKINCI": regions is empty',
        'department "IKINCI": lang must be one of',
        'department "ucuncu": name.ru is missing',
        'department "ucuncu": name.en is missing',
        # clashes are found even between departments with other problems
        'department "ucuncu": region "quba" is already served by department "birinci"',
        'department "dorduncu": staff must hold positive integers (Telegram user ids), not 2.5',
        'department "dorduncu": chat_id -7 is already the staff chat of department "ucuncu"',
    ]
    lines = str(error).splitlines()
    assert len(lines) == len(expected) == len(error.problems)
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(f"{SOURCE}: {start}"), line


def test_problems_stay_on_one_line_whatever_the_key() -> None:
    error = refused('[departments."a\\nb"]\nchat_id = 1\n')
    assert 'department "a\\nb"' in str(error)
    assert all(line.startswith(f"{SOURCE}: ") for line in str(error).splitlines())
    error = refused('departments."a\\nb" = 1\n')
    assert len(str(error).splitlines()) == len(error.problems) == 2
    assert all(line.startswith(f'{SOURCE}: department "a\\nb": ') for line in str(error).splitlines())


# Whatever the text, DepartmentsError or a usable result

FRAGMENTS = [
    "[departments]",
    "[departments.quba]",
    "[departments.baki]",
    "[departments.default]",
    '[departments."Bakı"]',
    "departments = 1",
    'name = { az = "Quba", ru = "Куба", en = "Quba" }',
    'name = { az = "" }',
    "name = 1",
    "chat_id = -1001000000005",
    "chat_id = -1001000000006",
    "chat_id = true",
    "chat_id = 0",
    "chat_id = 1979-05-27",
    "chat_id = nan",
    "staff = [1, 2]",
    "staff = []",
    "staff = [[1]]",
    'regions = ["Quba"]',
    'regions = ["QUBA", "Xətai"]',
    "regions = [{}]",
    'regions = ""',
    "admins_may_act = true",
    "admins_may_act = 1",
    'lang = "ru"',
    "lang = []",
    "fallback_staff = [3]",
    "fallback_admins_may_act = true",
    "x = [[[[[[[",
    "[[departments]]",
    "=",
    dept("quba"),
    dept("baki", chat_id="-1001000000001", regions='["Xətai", "quba"]'),
    dept("simal", chat_id="-1001000000003", staff="[]", admins_may_act="true", regions='["Sumqayıt"]'),
]


@given(st.one_of(st.text(), st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("\n".join)))
def test_any_text_gives_departments_or_departments_error(text: str) -> None:
    try:
        departments = Departments.parse(text, STAFF_CHAT, SOURCE)
    except DepartmentsError as error:
        assert error.problems
        assert all(line.startswith(f"{SOURCE}: ") for line in str(error).splitlines())
        assert len(str(error).splitlines()) == len(error.problems)
        return
    statistic("parsed")
    assert len(departments) >= 1
    for department in departments:
        assert departments.by_chat(department.chat_id) is department
        for region in department.regions:
            assert departments.for_region(region) is department


def test_deep_nesting_is_refused_not_crashed() -> None:
    error = refused("x = " + "[" * 100_000)
    assert "not valid TOML" in str(error)
