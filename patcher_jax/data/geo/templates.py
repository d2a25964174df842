"""Question and claim templates, per relation of the facts table.

Each relation has 6 question templates (zsRE) and 4 claim templates (FEVER).
The first template is a record's `input`; the others are its `rephrases`, in
template order. The last `held_out_questions` (2) / `held_out_claims` (1)
templates are held out: they are never an input in any split and a base model
must not train on them, so generality is measured on unseen wording. Because
rephrases keep template order, a record's held-out rephrases are always its
last ones (see views.py: `held_out_rephrases`, `trainable_rephrases`).

`{s}` is the subject, `{o}` the object. Templates name the kind of subject
("the city of", "the state of", "the airport") where a name could be read two
ways (Georgia the country vs the US state). A template is never a copy of
another relation's template with a subject both relations share.

`edit_weight` scales a relation's share of the edit split: relations with few
distinct objects (7 continents, 17 subregions, a handful of subdivision kinds)
are easy to guess from priors, so they stay in train/test (locality) and in
claims, but few of their facts are edits.
"""
from typing import Dict, NamedTuple, Tuple


class Relation(NamedTuple):
  name: str
  questions: Tuple[str, ...]
  claims: Tuple[str, ...]
  held_out_questions: int = 2
  held_out_claims: int = 1
  edit_weight: float = 1.0


RELATIONS: Tuple[Relation, ...] = (
    Relation(
        "city_country",
        ("Which country is the city of {s} in?",
         "In which country is the city of {s}?",
         "What country is the city of {s} located in?",
         "{s} is a city in which country?",
         "Name the country where the city of {s} lies.",
         "The city of {s} belongs to which country?"),
        ("The city of {s} is in {o}.",
         "{s} is a city located in {o}.",
         "{o} is the country where the city of {s} lies.",
         "The city of {s} belongs to {o}.")),
    Relation(
        "city_admin1",
        ("Which state or province is the city of {s} in?",
         "In which state or province is the city of {s}?",
         "What province or state contains the city of {s}?",
         "{s} is a city in which state or province?",
         "Name the region of its country where {s} lies.",
         "The city of {s} belongs to which province or state?"),
        ("The city of {s} is in the province or state of {o}.",
         "{s} is a city in {o}.",
         "{o} is the state or province containing {s}.",
         "The city of {s} belongs to the region {o}.")),
    Relation(
        "country_capital",
        ("What is the capital of {s}?",
         "Which city is the capital of the country {s}?",
         "What is the capital city of {s}?",
         "Where is the seat of government of the country {s}?",
         "Name the capital of {s}.",
         "The country {s} has which city as its capital?"),
        ("The capital of {s} is {o}.",
         "{o} is the capital city of {s}.",
         "The country {s} has its capital in {o}.",
         "The seat of government of {s} is {o}.")),
    Relation(
        "country_continent",
        ("On which continent is {s}?",
         "Which continent is {s} part of?",
         "{s} is located on what continent?",
         "What continent does {s} belong to?",
         "Name the continent where {s} lies.",
         "By continent, where in the world is {s}?"),
        ("{s} is located in {o}.",
         "{s} is a country on the continent of {o}.",
         "The continent {s} belongs to is {o}.",
         "{s} lies on the continent of {o}."),
        edit_weight=0.05),
    Relation(
        "country_currency",
        ("What is the currency of {s}?",
         "Which currency is used in {s}?",
         "What money do people pay with in {s}?",
         "What is the official currency of {s}?",
         "Name the legal tender of {s}.",
         "In {s}, prices are given in which currency?"),
        ("The currency of {s} is the {o}.",
         "People in {s} pay with the {o}.",
         "The official currency of {s} is the {o}.",
         "The legal tender in {s} is the {o}.")),
    Relation(
        "country_official_language",
        ("What is the official language of {s}?",
         "Which language is official in {s}?",
         "What language does the government of {s} use?",
         "Which is the official language of {s}?",
         "Name the official language of {s}.",
         "In {s}, which language has official status?"),
        ("The official language of {s} is {o}.",
         "{o} is the official language of {s}.",
         "{s} has {o} as its official language.",
         "In {s}, {o} has official status."),
        edit_weight=0.3),
    Relation(
        "country_calling_code",
        ("What is the international calling code of {s}?",
         "Which telephone country code does {s} use?",
         "What is the dialing code for {s}?",
         "What code do you dial to call {s}?",
         "Name the calling code of {s}.",
         "Phone numbers in {s} start with which country code?"),
        ("The international calling code of {s} is {o}.",
         "{s} uses the telephone country code {o}.",
         "To call {s} from abroad you dial {o}.",
         "Phone numbers in {s} start with the country code {o}.")),
    Relation(
        "country_demonym",
        ("What is the demonym for people from {s}?",
         "What are people from {s} called?",
         "What is a person from {s} called?",
         "What word describes someone from {s}?",
         "Name the demonym of {s}.",
         "A citizen of {s} is described by which word?"),
        ("People from {s} are called {o}.",
         "A person from {s} is {o}.",
         "The demonym of {s} is {o}.",
         "A citizen of {s} is described as {o}.")),
    Relation(
        "country_subregion",
        ("Which region of the world is {s} in?",
         "What UN subregion does {s} belong to?",
         "In which geographic subregion is {s}?",
         "{s} is part of which world region?",
         "Name the subregion where {s} lies.",
         "Geographers place {s} in which subregion?"),
        ("{s} is in the world region of {o}.",
         "{s} belongs to the subregion of {o}.",
         "The UN places {s} in {o}.",
         "Geographers place {s} in {o}."),
        edit_weight=0.05),
    Relation(
        "subdivision_country",
        ("Which country is the region of {s} in?",
         "In which country is the administrative division {s}?",
         "{s} is a subdivision of which country?",
         "What country does the region of {s} belong to?",
         "Name the country that contains the region of {s}.",
         "The administrative region {s} lies in which country?"),
        ("The region of {s} is in {o}.",
         "{s} is an administrative division of {o}.",
         "{o} contains the region of {s}.",
         "The administrative region {s} lies in {o}.")),
    Relation(
        "subdivision_type",
        ("What kind of administrative division is {s}?",
         "What type of subdivision is {s}?",
         "{s} is what kind of administrative unit?",
         "Which type of territorial division is {s}?",
         "Name the kind of administrative division {s} is.",
         "As an administrative unit, {s} is classed as what?"),
        ("{s} is an administrative unit of type {o}.",
         "The subdivision type of {s} is {o}.",
         "{s} has the administrative status of {o}.",
         "As an administrative unit, {s} is classed as {o}."),
        edit_weight=0.05),
    Relation(
        "county_state",
        ("Which US state is {s} in?",
         "In which state of the United States is {s}?",
         "{s} is a county in which state?",
         "What state does {s} belong to?",
         "Name the US state that contains {s}.",
         "{s} lies in which American state?"),
        ("{s} is in the state of {o}.",
         "{s} is a county of {o}.",
         "The state of {o} contains {s}.",
         "{s} lies in the American state of {o}.")),
    Relation(
        "state_capital",
        ("What is the capital of the US state of {s}?",
         "Which city is the capital of the state of {s}?",
         "What is the state capital of {s}?",
         "Where is the seat of government of the state of {s}?",
         "Name the capital of the state of {s}.",
         "The state of {s} has which city as its capital?"),
        ("The capital of the state of {s} is {o}.",
         "{o} is the state capital of {s}.",
         "The state of {s} has its capital in {o}.",
         "The seat of government of the state of {s} is {o}.")),
    Relation(
        "state_abbreviation",
        ("What is the postal abbreviation of the state of {s}?",
         "Which two-letter postal code does the state of {s} have?",
         "What is the USPS code for the state of {s}?",
         "How is the state of {s} abbreviated in addresses?",
         "Name the postal abbreviation of the state of {s}.",
         "Mail to the state of {s} uses which two-letter code?"),
        ("The postal abbreviation of the state of {s} is {o}.",
         "{o} is the USPS code of the state of {s}.",
         "The state of {s} is abbreviated {o}.",
         "Mail to the state of {s} uses the code {o}.")),
    Relation(
        "state_statehood_year",
        ("In what year did {s} become a US state?",
         "When was the state of {s} admitted to the Union?",
         "What year did {s} achieve statehood?",
         "In which year did {s} join the United States as a state?",
         "Name the year the state of {s} was admitted.",
         "{s} was admitted as a US state in which year?"),
        ("{s} became a US state in {o}.",
         "The state of {s} was admitted to the Union in {o}.",
         "{s} achieved statehood in {o}.",
         "{s} joined the United States as a state in {o}.")),
    Relation(
        "airport_country",
        ("Which country is {s} in?",
         "In which country is {s}?",
         "{s} is an airport in which country?",
         "What country is {s} located in?",
         "Name the country where {s} is.",
         "{s} lies in which country?"),
        ("{s} is an airport in {o}.",
         "{s} is located in the country {o}.",
         "{o} is the country where {s} is.",
         "{s} lies in {o}.")),
    Relation(
        "airport_city",
        ("Which city does {s} serve?",
         "What city is served by {s}?",
         "{s} is the airport of which city?",
         "Which town is {s} near?",
         "Name the city served by {s}.",
         "Travellers fly into {s} to reach which city?"),
        ("{s} serves the city of {o}.",
         "{o} is the city served by {s}.",
         "{s} is the airport of {o}.",
         "Travellers fly into {s} to reach {o}.")),
    Relation(
        "airport_iata_code",
        ("What is the IATA code of {s}?",
         "Which three-letter IATA code does {s} have?",
         "What is the airport code of {s}?",
         "Which IATA airport code identifies {s}?",
         "Name the IATA code of {s}.",
         "Luggage tags for {s} carry which three-letter code?"),
        ("The IATA code of {s} is {o}.",
         "{s} has the airport code {o}.",
         "{o} is the IATA code identifying {s}.",
         "Luggage tags for {s} carry the code {o}.")),
)

BY_NAME: Dict[str, Relation] = {r.name: r for r in RELATIONS}


def templates(relation: str, task: str) -> Tuple[str, ...]:
  """Question templates for zsRE, claim templates for FEVER."""
  rel = BY_NAME[relation]
  return rel.questions if task == "zsre" else rel.claims


def held_out_count(relation: str, task: str) -> int:
  """How many of a record's rephrases (its last ones) are held out."""
  rel = BY_NAME[relation]
  return rel.held_out_questions if task == "zsre" else rel.held_out_claims
