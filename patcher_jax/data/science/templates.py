"""Question and claim templates of the science benchmark (not geography).

Same layout as the geography templates (`patcher_jax/data/geo/templates.py`,
whose `Relation` type is reused): 6 questions and 4 claims per relation, the
first is a record's `input`, the rest its `rephrases` in template order, the
last 2 questions / 1 claim are held-out wording. The wording is this module's
own; no template of the geography benchmark is reused.

`edit_weight` scales a relation's share of the edit split: relations with a
handful of objects (4 blocks, 7 periods, 10 series) are guessable from
priors, so few of their facts are edits.
"""
from typing import Dict, Tuple

from patcher_jax.data.geo.templates import Relation

RELATIONS: Tuple[Relation, ...] = (
    # ---------------------------------------------------------- elements
    Relation(
        "element_symbol",
        ("What is the chemical symbol for {s}?",
         "Which symbol stands for the element {s}?",
         "On the periodic table, {s} is written with what symbol?",
         "What one- or two-letter symbol denotes {s}?",
         "Chemists abbreviate the element {s} as what?",
         "The element {s} carries which symbol in formulas?"),
        ("The chemical symbol for {s} is {o}.",
         "{s} is written {o} on the periodic table.",
         "{o} is the symbol that denotes the element {s}.",
         "In formulas, chemists abbreviate {s} as {o}.")),
    Relation(
        "element_atomic_number",
        ("What is the atomic number of {s}?",
         "How many protons does an atom of {s} have?",
         "Which atomic number does the element {s} have?",
         "{s} has what atomic number?",
         "What is the proton count of the element {s}?",
         "In the periodic table, at which number does {s} sit?"),
        ("The atomic number of {s} is {o}.",
         "An atom of {s} has {o} protons.",
         "{o} is the atomic number of the element {s}.",
         "The element {s} sits at number {o} of the periodic table.")),
    Relation(
        "element_discoverer",
        ("Who discovered the element {s}?",
         "The element {s} was first identified by whom?",
         "Who is credited with the discovery of {s}?",
         "Which scientist found the element {s}?",
         "To whom is the discovery of {s} attributed?",
         "Whose work first isolated or identified {s}?"),
        ("The element {s} was discovered by {o}.",
         "{o} first identified the element {s}.",
         "The discovery of {s} is credited to {o}.",
         "{s} was first isolated or identified by {o}.")),
    Relation(
        "element_discovery_year",
        ("In what year was {s} discovered?",
         "When was the element {s} first identified?",
         "Which year saw the discovery of {s}?",
         "The element {s} was discovered in which year?",
         "What is the discovery year of {s}?",
         "In which year did {s} become a known element?"),
        ("{s} was discovered in {o}.",
         "The element {s} was first identified in {o}.",
         "{o} is the year the element {s} was discovered.",
         "The element {s} became known in {o}.")),
    Relation(
        "element_block",
        ("Which block of the periodic table is {s} in?",
         "In which block does the element {s} lie?",
         "{s} belongs to what periodic table block?",
         "What block is the element {s} placed in?",
         "Which orbital block contains {s}?",
         "Name the block of the periodic table holding {s}."),
        ("{s} is in the {o} of the periodic table.",
         "The element {s} lies in the {o}.",
         "The {o} is where the element {s} is placed.",
         "{s} belongs to the periodic table's {o}."),
        edit_weight=0.1),
    Relation(
        "element_period",
        ("Which period of the periodic table is {s} in?",
         "In which row of the periodic table is {s}?",
         "{s} is found in what period?",
         "What period does the element {s} belong to?",
         "Which horizontal row holds the element {s}?",
         "Name the period number of {s}."),
        ("{s} is in period {o} of the periodic table.",
         "The element {s} lies in row {o} of the periodic table.",
         "Period {o} contains the element {s}.",
         "The element {s} is found in the periodic table's row {o}."),
        edit_weight=0.2),
    Relation(
        "element_series",
        ("Which series of elements does {s} belong to?",
         "What family of elements is {s} part of?",
         "{s} is classified in which series of the periodic table?",
         "In what chemical series is the element {s}?",
         "Which category of elements includes {s}?",
         "Name the group of elements that {s} is counted among."),
        ("{s} belongs to the series of {o}.",
         "The element {s} is one of the {o}.",
         "The {o} include the element {s}.",
         "{s} is counted among the {o}."),
        edit_weight=0.2),
    # --------------------------------------------------------- compounds
    Relation(
        "compound_formula",
        ("What is the molecular formula of {s}?",
         "Which chemical formula does {s} have?",
         "{s} has what molecular formula?",
         "Write the formula of the compound {s}.",
         "What formula describes a molecule of {s}?",
         "Which atoms, with counts, make up {s}? Give the formula."),
        ("The molecular formula of {s} is {o}.",
         "{s} has the chemical formula {o}.",
         "{o} is the formula of the compound {s}.",
         "A molecule of {s} is described by the formula {o}.")),
    Relation(
        "compound_cas",
        ("What is the CAS registry number of {s}?",
         "Which CAS number identifies {s}?",
         "{s} is registered under what CAS number?",
         "Give the CAS number of the chemical {s}.",
         "What is the Chemical Abstracts Service number for {s}?",
         "Under which CAS identifier is {s} listed?"),
        ("The CAS registry number of {s} is {o}.",
         "{s} is identified by CAS number {o}.",
         "{o} is the CAS number of the chemical {s}.",
         "Chemical Abstracts Service lists {s} as {o}.")),
    # --------------------------------------------------------- languages
    Relation(
        "language_iso639_3",
        ("What is the ISO 639-3 code of the {s} language?",
         "Which three-letter ISO 639-3 code identifies {s}?",
         "The language {s} has what ISO 639-3 code?",
         "Give the ISO 639-3 identifier of {s}.",
         "What three-letter code does ISO 639-3 assign to {s}?",
         "Under which ISO 639-3 tag is the {s} language listed?"),
        ("The ISO 639-3 code of the {s} language is {o}.",
         "{s} is identified by the ISO 639-3 code {o}.",
         "{o} is the ISO 639-3 code assigned to {s}.",
         "ISO 639-3 lists the {s} language under {o}.")),
    Relation(
        "language_iso639_1",
        ("What is the two-letter ISO 639-1 code of {s}?",
         "Which ISO 639-1 code stands for the {s} language?",
         "The language {s} is abbreviated how in ISO 639-1?",
         "Give the ISO 639-1 code of {s}.",
         "What two-letter code does ISO 639-1 give the {s} language?",
         "Under which two-letter tag is {s} listed in ISO 639-1?"),
        ("The ISO 639-1 code of {s} is {o}.",
         "{s} is abbreviated {o} in ISO 639-1.",
         "{o} is the two-letter ISO 639-1 code of {s}.",
         "ISO 639-1 lists the {s} language as {o}.")),
    Relation(
        "language_macrolanguage",
        ("Which macrolanguage is {s} part of?",
         "{s} is counted under which macrolanguage?",
         "What macrolanguage includes the language {s}?",
         "In ISO 639-3, {s} belongs to which macrolanguage?",
         "Name the macrolanguage that {s} falls under.",
         "Of which macrolanguage is {s} an individual member?"),
        ("{s} is part of the {o} macrolanguage.",
         "The macrolanguage {o} includes {s}.",
         "{o} is the macrolanguage that {s} belongs to.",
         "{s} is an individual member of the {o} macrolanguage.")),
    # ------------------------------------------------------ web standards
    Relation(
        "http_status_phrase",
        ("What is the reason phrase of HTTP status code {s}?",
         "Which phrase goes with the HTTP status {s}?",
         "HTTP status code {s} means what?",
         "What does a web server mean by status code {s}?",
         "Give the standard reason phrase for HTTP {s}.",
         "A response with HTTP status {s} is described by what phrase?"),
        ("The reason phrase of HTTP status code {s} is {o}.",
         "HTTP status {s} means {o}.",
         "{o} is the standard phrase for HTTP status code {s}.",
         "A web server answering {s} reports {o}.")),
    Relation(
        "file_mime_type",
        ("What is the MIME type of files with the extension {s}?",
         "Which media type does a {s} file have?",
         "Files ending in {s} are served with what MIME type?",
         "Give the content type of a file named with {s}.",
         "What Content-Type header goes with the extension {s}?",
         "Which internet media type is registered for {s} files?"),
        ("Files with the extension {s} have the MIME type {o}.",
         "A {s} file has the media type {o}.",
         "{o} is the content type of files ending in {s}.",
         "Files named with {s} are served as {o}.")),
)

BY_NAME: Dict[str, Relation] = {r.name: r for r in RELATIONS}


def templates(relation: str, task: str) -> Tuple[str, ...]:
  """Question templates for zsRE, claim templates for FEVER."""
  rel = BY_NAME[relation]
  return rel.questions if task == "zsre" else rel.claims
