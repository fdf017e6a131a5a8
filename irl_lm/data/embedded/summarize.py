"""`embedded_summarize`: short news-like documents -> one-sentence summaries (ROUGE).

A document has one main event (who, role, did what, how many of which object,
where, on which weekday) told in one of four templates (active, apposition,
passive, relative clause), and two or three distractor sentences that mention
other names, places, objects and days, including a "last year" event. The summary
must pick the main event's facts and restate them in canonical order, so a model
has to locate entities by their syntactic role, turn passives into active past
tense, and ignore distractors. Each reference uses one of three summary templates
drawn at random, so several summaries are valid and a sampling policy has room to
be diverse (ROUGE against a single reference stays below 100 for some of them).
"""
import random

NAMES = ("anna", "ben", "carl", "dora", "emma", "finn", "gina", "hugo", "iris", "jack",
         "kate", "leon", "mia", "noah", "olga", "paul", "rosa", "sam", "tina", "victor")
ROLES = ("mayor", "teacher", "farmer", "doctor", "baker", "pilot", "nurse", "chef",
         "judge", "singer")
PLACES = ("york", "paris", "rome", "oslo", "lima", "cairo", "delhi", "tokyo", "berlin",
          "madrid", "dublin", "vienna")
OBJECTS = ("apples", "books", "chairs", "boxes", "cakes", "bikes", "lamps", "coats",
           "shoes", "kites", "tables", "maps")
VERBS = (  # (past, past participle)
    ("sold", "sold"), ("bought", "bought"), ("built", "built"), ("painted", "painted"),
    ("found", "found"), ("carried", "carried"), ("repaired", "repaired"),
    ("stole", "stolen"), ("took", "taken"), ("drew", "drawn"), ("hid", "hidden"),
    ("threw", "thrown"), ("made", "made"), ("lost", "lost"), ("cleaned", "cleaned"))
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
WEATHER = ("sunny", "rainy", "cold", "windy", "warm", "foggy")
ADJECTIVES = ("old", "new", "red", "big", "small", "cheap")
FUNCTION_WORDS = ("on", "the", "in", "were", "by", "who", "is", "a", "weather", "was",
                  "said", "last", "year", "many", "people", "like", "will", "visit")
WORDS = NAMES + ROLES + PLACES + OBJECTS + tuple(w for v in VERBS for w in v) + DAYS \
    + WEATHER + ADJECTIVES + FUNCTION_WORDS

_EVENT_TEMPLATES = (
    "on {day} , the {role} {name} {past} {n} {obj} in {place} .",
    "in {place} , {name} , the {role} , {past} {n} {obj} on {day} .",
    "{n} {obj} were {pp} by {name} , the {role} , in {place} on {day} .",
    "{name} , who is a {role} , {past} {n} {obj} on {day} in {place} .",
)
_DISTRACTOR_TEMPLATES = (
    "the weather in {place} was {weather} on {day} .",
    "{name} , a {role} , said the {obj} were {adj} .",
    "last year {name} {past} {n} {obj} in {place} .",
    "many people in {place} like {obj} .",
    "{name} will visit {place} on {day} .",
)
_SUMMARY_TEMPLATES = (
    "{name} {past} {n} {obj} in {place} .",
    "the {role} {name} {past} {n} {obj} .",
    "in {place} , {name} {past} {n} {obj} on {day} .",
)


def _facts(rng: random.Random, exclude: dict[str, str] | None = None) -> dict[str, str]:
  """Random slot values; with `exclude`, every entity differs from the main event's."""
  def pick(pool, key):
    choices = [x for x in pool if not exclude or x != exclude[key]]
    return rng.choice(choices)
  past, pp = rng.choice(VERBS)
  return {"name": pick(NAMES, "name"), "role": pick(ROLES, "role"),
          "place": pick(PLACES, "place"), "obj": pick(OBJECTS, "obj"),
          "day": pick(DAYS, "day"), "past": past, "pp": pp, "n": str(rng.randint(2, 19)),
          "weather": rng.choice(WEATHER), "adj": rng.choice(ADJECTIVES)}


def make_example(rng: random.Random) -> dict[str, str]:
  """One (document, summary) pair as {"inputs", "targets"}."""
  main = _facts(rng)
  sentences = [rng.choice(_EVENT_TEMPLATES).format(**main)]
  for template in rng.sample(_DISTRACTOR_TEMPLATES, rng.randint(2, 3)):
    sentences.append(template.format(**_facts(rng, exclude=main)))
  rng.shuffle(sentences)
  return {"inputs": " ".join(sentences),
          "targets": rng.choice(_SUMMARY_TEMPLATES).format(**main)}
