"""Voice-search queries in written form, with entities from two eras.

`launch` holds the names a recogniser is trained on at launch; `new` holds people who became
newsworthy afterwards (invented names whose words never occur in launch data), the drift that
a retraining cycle has to catch. The `new` list doubles as a newsroom's curated hot-word list.

Queries are written the way a labeller would type them ("Set a timer for 15 minutes",
"Um, who is Zarina Okonkwo-Bell?"); `tasks.text.normalise_transcript` gives the spoken form.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

ERAS: tuple[str, ...] = ("launch", "new")
FILLER_RATE = 0.03
_FILLERS = ("um", "uh")
DEFAULT_ERA_WEIGHTS: Mapping[str, float] = MappingProxyType({"launch": 1.0})

# --- launch-era entities: real cities, invented or very common names --------------------------
_CITIES = (
    "London",
    "Paris",
    "New York",
    "Chicago",
    "Boston",
    "Seattle",
    "Denver",
    "Austin",
    "Miami",
    "Toronto",
    "Sydney",
    "Berlin",
    "Madrid",
    "Rome",
    "Tokyo",
    "Dublin",
    "Atlanta",
    "Phoenix",
    "Houston",
    "San Francisco",
    "Los Angeles",
    "Vancouver",
    "Amsterdam",
    "Lisbon",
)
_PLACES = (
    "Central Station",
    "the airport",
    "the nearest gas station",
    "City Hall",
    "Union Square",
    "Main Street",
    "the public library",
    "the train station",
    "the shopping mall",
    "the closest pharmacy",
    "the city museum",
    "Riverside Park",
    "the stadium",
    "the beach",
)
_ARTISTS = (
    "Sarah Collins",
    "Danny Walsh",
    "Rosa Martin",
    "The Midnight Riders",
    "Blue Harbor",
    "Golden Fields",
    "The Silver Lines",
    "Maya Lopez",
    "Jake Harper",
    "The Paper Kites Band",
    "Nina Scott",
    "Leo Grant",
)
_SONGS = (
    "Summer Rain",
    "Paper Hearts",
    "Highway Home",
    "Golden Hour",
    "Slow Motion",
    "City Lights",
    "Back to You",
    "Falling Stars",
    "Open Road",
    "Midnight Train",
    "Better Days",
    "Last Summer",
)
_CELEBRITIES = (
    "Emma Carter",
    "Jack Morgan",
    "Olivia Bennett",
    "Liam Foster",
    "Sophia Turner",
    "Noah Hayes",
    "Ava Mitchell",
    "Ethan Brooks",
    "Mia Sullivan",
    "Lucas Reed",
    "Grace Parker",
    "Henry Adams",
)
_POLITICIANS = (
    "Robert Hughes",
    "Karen Phillips",
    "Daniel Price",
    "Susan Ward",
    "Thomas Powell",
    "Linda Russell",
    "James Coleman",
    "Patricia Long",
    "Richard Barnes",
    "Nancy Fisher",
)
_ATHLETES = (
    "Marcus Green",
    "Tyler Jenkins",
    "Ryan Cooper",
    "Kevin Howard",
    "Jessica Perry",
    "Alex Rivera",
    "Megan Butler",
    "Brian Kelly",
)
_TEAMS = (
    "the Riverside Rangers",
    "the Harbor City Hawks",
    "the Lakeside Lions",
    "the Valley Wolves",
    "the Capital Eagles",
    "the Northside Knights",
    "the Bay Tigers",
    "the Mountain Miners",
)
_SHOPS = (
    "Green Market",
    "Corner Hardware",
    "City Books",
    "Sunrise Bakery",
    "Main Street Pharmacy",
    "Best Electronics",
    "Home Goods Outlet",
    "Fresh Foods",
)
_RESTAURANTS = (
    "Luigi's Trattoria",
    "Golden Dragon",
    "The Corner Diner",
    "Blue Fin Sushi",
    "Taco Fiesta",
    "Spice Garden",
    "The Burger Shack",
    "Olive Tree Cafe",
)
_CONTACTS = (
    "Mom",
    "Dad",
    "Sarah",
    "David",
    "Grandma",
    "Jessica",
    "Mike",
    "Emily",
    "Chris",
    "Anna",
    "the office",
    "my brother",
    "my sister",
)
_COUNTRIES = (
    "Australia",
    "Canada",
    "Brazil",
    "Japan",
    "Kenya",
    "Norway",
    "Mexico",
    "India",
    "Egypt",
    "Spain",
    "Argentina",
    "Germany",
)
_MOVIES = (
    "The Long Night",
    "Silent Harbor",
    "Running Home",
    "The Last Garden",
    "Blue Skies",
    "Winter Road",
)

# --- new-era people: invented, plausible, word vocabulary disjoint from everything above -------
_NEW_CELEBRITIES = (
    "Zarina Okonkwo-Bell",
    "Teodor Vasquez-Lindqvist",
    "Ilsabet Marangoni",
    "Kwesi Achterberg",
    "Saoirse Valdemarsson",
    "Anouk Tshabalala",
    "Dariusz Okafor-Reyes",
    "Yelena Brightwater",
    "Oluwaseun Castellanos",
    "Thandiwe Morrisette",
    "Leopold Nakashima",
    "Mireille Abernathy-Cho",
    "Ravindra Sorensen",
    "Fenella Quartermaine",
    "Caspian Adeyemi",
    "Ottoline Ferreira-Kahn",
    "Bartholomew Ngata",
    "Ysolde Karamanlis",
    "Evander Szczepanski",
    "Marisol Eriksdottir",
    "Ignatius Oyelaran-Hart",
    "Seraphine Delacroix-Obi",
    "Cosimo Thorvaldsen",
    "Tindra Okoye-Whitfield",
)
_NEW_POLITICIANS = (
    "Aurelio Brandvold",
    "Henrika Mwangi-Lowe",
    "Ezekiel Varga-Tunstall",
    "Philippa Nwachukwu-Dorsey",
    "Casimir Ravensworth",
    "Ludmila Fairweather-Osei",
    "Benedikt Almqvist",
    "Oriane Kolawole",
    "Mathias Quisenberry",
    "Imogen Zeferino",
    "Radomir Ashdown-Kaye",
    "Soledad Haverkamp",
    "Ulrich Tembo-Marsh",
    "Genevieve Oduya",
    "Anselm Kirkegaard",
    "Valentina Przybylski",
    "Desmond Ilunga-Pryce",
    "Wilhelmina Castellvi",
    "Percival Adebanjo",
    "Esperanza Lindgren-Moss",
)

# --- non-entity slot values ---------------------------------------------------------------
_CUISINES = (
    "Italian",
    "Thai",
    "Mexican",
    "sushi",
    "pizza",
    "Indian",
    "Chinese",
    "vegan",
    "burger",
    "ramen",
    "Greek",
    "Korean",
)
_PRODUCTS = (
    "running shoes",
    "coffee makers",
    "headphones",
    "birthday cakes",
    "printer ink",
    "dog food",
    "winter jackets",
    "phone chargers",
    "desk lamps",
    "sunscreen",
)
_ITEMS = ("bananas", "eggs", "apples", "lemons", "bagels", "tomatoes", "batteries", "candles")
_GENRES = ("jazz", "rock", "classical", "country", "hip hop", "pop", "blues", "reggae")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_TASKS = (
    "call the dentist",
    "buy milk",
    "water the plants",
    "pick up the kids",
    "take my medicine",
    "pay the rent",
    "send the report",
)
_UNITS = (
    ("miles", "kilometers"),
    ("pounds", "kilograms"),
    ("cups", "liters"),
    ("feet", "meters"),
    ("dollars", "euros"),
    ("ounces", "grams"),
)

_TEMPLATES: dict[str, tuple[str, ...]] = {
    "weather": (
        "What's the weather in {city} tomorrow?",
        "Will it rain in {city} this weekend?",
        "Weather forecast for {city}",
        "Do I need an umbrella today?",
        "How hot will it be in {city} on {day}?",
        "Temperature in {city} right now",
        "Is it going to snow in {city} on {day}?",
    ),
    "navigation": (
        "Navigate to {place}",
        "Directions to {place}",
        "Take me to {place}",
        "How long does it take to drive to {city}?",
        "How far is {place} from here?",
        "Find parking near {place}",
        "Avoid highways on the way to {place}",
    ),
    "music": (
        "Play {song} by {artist}",
        "Play some {genre} music",
        "Play the latest album by {artist}",
        "Shuffle songs by {artist}",
        "Play the top {count} songs by {artist}",
        "Who sings {song}?",
        "Play the new song by {celebrity}",
    ),
    "people_search": (
        "Who is {person}?",
        "How old is {celebrity}?",
        "Is {celebrity} married?",
        "Where was {person} born?",
        "{celebrity} net worth",
        "How tall is {athlete}?",
        "Show me pictures of {celebrity}",
        "What is {politician} known for?",
    ),
    "news": (
        "Latest news about {politician}",
        "What did {politician} say today?",
        "Headlines for {city}",
        "Top news stories today",
        "Any news about {celebrity}?",
        "Is {politician} running for office again?",
        "News about {team}",
    ),
    "sports": (
        "What's the score of the {team} game?",
        "When do {team} play next?",
        "Did {team} win last night?",
        "Who won the game between {team} and {team_2}?",
        "{athlete} stats this season",
        "Schedule for {team} in {month}",
    ),
    "shopping": (
        "Buy {product}",
        "Where can I buy {product} near me?",
        "Is {shop} open now?",
        "Add {count} {item} to my shopping list",
        "Cheapest {product} online",
        "What time does {shop} close on {day}?",
    ),
    "facts": (
        "What is the capital of {country}?",
        "How many people live in {country}?",
        "Who was the {ordinal} president?",
        "How far is the moon?",
        "How many days until {month} {ordinal}?",
        "What is the population of {city}?",
        "Who invented the telephone?",
    ),
    "timers_alarms": (
        "Set a timer for {minutes} minutes",
        "Wake me up at {time}",
        "Set an alarm for {time} tomorrow",
        "Cancel my {time} alarm",
        "Remind me to {task} at {time}",
        "How much time is left on my timer?",
        "Set a {minutes} minute timer for the pasta",
    ),
    "calls_messages": (
        "Call {contact}",
        "Call {contact} on speaker",
        "Text {contact} that I'm running {minutes} minutes late",
        "Send a message to {contact}",
        "Read my messages from {contact}",
        "Video call {contact}",
    ),
    "restaurants": (
        "Find {cuisine} restaurants near me",
        "Book a table for {count} at {restaurant}",
        "Is {restaurant} open now?",
        "Best {cuisine} food in {city}",
        "Order {cuisine} for delivery",
        "What time does {restaurant} close?",
    ),
    "conversions": (
        "Convert {count} {unit_pair}",
        "What's {percent}% of {amount}?",
        "How many ounces in a pound?",
        "What is {amount} divided by {count}?",
    ),
    "movies": (
        "Movies starring {celebrity}",
        "Showtimes for {movie} in {city}",
        "What movies are playing near me tonight?",
        "Who plays the lead in {movie}?",
        "Is {movie} worth watching?",
    ),
}
INTENTS: tuple[str, ...] = tuple(_TEMPLATES)

# slot type -> written values per era; person slots are the ones the new era refills
_LAUNCH_ENTITIES: dict[str, tuple[str, ...]] = {
    "city": _CITIES,
    "place": _PLACES,
    "artist": _ARTISTS,
    "song": _SONGS,
    "celebrity": _CELEBRITIES,
    "politician": _POLITICIANS,
    "person": _CELEBRITIES + _POLITICIANS + _ATHLETES,
    "athlete": _ATHLETES,
    "team": _TEAMS,
    "shop": _SHOPS,
    "restaurant": _RESTAURANTS,
    "contact": _CONTACTS,
    "country": _COUNTRIES,
    "movie": _MOVIES,
}
_NEW_ENTITIES: dict[str, tuple[str, ...]] = {
    "celebrity": _NEW_CELEBRITIES,
    "politician": _NEW_POLITICIANS,
    "person": _NEW_CELEBRITIES + _NEW_POLITICIANS,
}
_ERA_ENTITIES: dict[str, dict[str, tuple[str, ...]]] = {
    "launch": _LAUNCH_ENTITIES,
    "new": _NEW_ENTITIES,
}
_PLAIN_SLOTS: dict[str, tuple[str, ...]] = {
    "cuisine": _CUISINES,
    "product": _PRODUCTS,
    "item": _ITEMS,
    "genre": _GENRES,
    "day": _DAYS,
    "month": _MONTHS,
    "task": _TASKS,
}

ENTITY_NAMES: dict[str, tuple[str, ...]] = {
    "launch": tuple(sorted({v for values in _LAUNCH_ENTITIES.values() for v in values})),
    "new": _NEW_CELEBRITIES + _NEW_POLITICIANS,
}


@dataclass(frozen=True)
class Query:
    """One voice-search query in written form, with the entities it mentions."""

    text: str
    intent: str
    entities: tuple[str, ...]
    era: str


def _ordinal(n: int) -> str:
    """Write an ordinal with digits ("21st")."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _time_of_day(rng: np.random.Generator) -> str:
    """A clock time as people type it ("6:30", "7 o'clock")."""
    hour = int(rng.integers(5, 12))
    minute = int(rng.choice([0, 0, 15, 20, 30, 40, 45]))
    return f"{hour} o'clock" if minute == 0 else f"{hour}:{minute}"


_NUMERIC_SLOTS: dict[str, Callable[[np.random.Generator], str]] = {
    "count": lambda rng: str(int(rng.integers(2, 13))),
    "minutes": lambda rng: str(int(rng.choice([2, 3, 5, 10, 12, 15, 20, 25, 30, 45, 90]))),
    "time": _time_of_day,
    "ordinal": lambda rng: _ordinal(int(rng.integers(1, 32))),
    "percent": lambda rng: str(int(rng.choice([5, 10, 15, 18, 20, 25, 30, 75]))),
    "amount": lambda rng: str(int(rng.choice([40, 60, 80, 120, 250, 300, 1500]))),
    "unit_pair": lambda rng: " to ".join(_UNITS[int(rng.integers(len(_UNITS)))]),
}


def _slots(template: str) -> list[str]:
    """The slot names of a template, in order."""
    return [field for _, field, _, _ in string.Formatter().parse(template) if field]


def _slot_type(slot: str) -> str:
    """The value type of a slot ("team_2" -> "team")."""
    return slot.rsplit("_", 1)[0] if slot.endswith("_2") else slot


def _pick(values: tuple[str, ...], rng: np.random.Generator, avoid: set[str]) -> str:
    """One value not in `avoid` (so "{team} and {team_2}" names two different teams)."""
    choices = [v for v in values if v not in avoid] or list(values)
    return choices[int(rng.integers(len(choices)))]


def _fill(template: str, era: str, rng: np.random.Generator) -> tuple[str, tuple[str, ...]]:
    """Fill a template's slots; return the text and the entity values it mentions."""
    values: dict[str, str] = {}
    entities: list[str] = []
    for slot in _slots(template):
        kind = _slot_type(slot)
        era_values = _ERA_ENTITIES[era].get(kind) or _LAUNCH_ENTITIES.get(kind)
        if era_values is not None:
            values[slot] = _pick(era_values, rng, set(values.values()))
            entities.append(values[slot])
        elif kind in _PLAIN_SLOTS:
            values[slot] = _pick(_PLAIN_SLOTS[kind], rng, set())
        elif kind in _NUMERIC_SLOTS:
            values[slot] = _NUMERIC_SLOTS[kind](rng)
        else:
            raise KeyError(f"template {template!r} has an unknown slot {slot!r}")
    text = template.format(**values)
    return text[0].upper() + text[1:], tuple(entities)


def _add_filler(text: str, rng: np.random.Generator, starts_with_name: bool) -> str:
    """Insert a hesitation ("Um, what's..." or "Play, uh, ...") the way labellers write it."""
    filler = _FILLERS[int(rng.integers(len(_FILLERS)))]
    first, _, rest = text.partition(" ")
    if not rest or rng.random() < 0.6:
        head = text if starts_with_name else text[0].lower() + text[1:]
        return f"{filler.capitalize()}, {head}"
    return f"{first}, {filler}, {rest}"


def _new_era_templates() -> dict[str, tuple[str, ...]]:
    """Templates whose slots a new-era person can fill, by intent."""
    person_slots = set(_NEW_ENTITIES)
    found = {
        intent: tuple(t for t in templates if person_slots & {_slot_type(s) for s in _slots(t)})
        for intent, templates in _TEMPLATES.items()
    }
    return {intent: templates for intent, templates in found.items() if templates}


def _era_probabilities(era_weights: Mapping[str, float]) -> tuple[list[str], np.ndarray]:
    """Validate era weights; return the eras (sorted) and their probabilities."""
    if not era_weights:
        raise ValueError(f"expected at least one era weight out of {ERAS}, got none")
    unknown = sorted(set(era_weights) - set(ERAS))
    if unknown:
        raise ValueError(f"expected eras among {ERAS}, got unknown {unknown}")
    eras = sorted(era_weights)
    weights = np.array([float(era_weights[e]) for e in eras])
    if not all(math.isfinite(w) and w >= 0 for w in weights) or weights.sum() <= 0:
        raise ValueError(
            f"expected finite non-negative era weights with a positive sum, got {dict(era_weights)}"
        )
    return eras, weights / weights.sum()


def generate_queries(
    n: int, seed: int, era_weights: Mapping[str, float] = DEFAULT_ERA_WEIGHTS
) -> list[Query]:
    """Generate `n` written voice-search queries, deterministic for a given seed and weights."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"expected a non-negative number of queries, got {n!r}")
    eras, probs = _era_probabilities(era_weights)
    rng = np.random.default_rng(seed)
    new_templates = _new_era_templates()
    queries = []
    for _ in range(n):
        era = eras[int(rng.choice(len(eras), p=probs))]
        by_intent = _TEMPLATES if era == "launch" else new_templates
        intents = sorted(by_intent)
        intent = intents[int(rng.integers(len(intents)))]
        templates = by_intent[intent]
        template = templates[int(rng.integers(len(templates)))]
        text, entities = _fill(template, era, rng)
        if rng.random() < FILLER_RATE:
            text = _add_filler(text, rng, starts_with_name=template.startswith("{"))
        queries.append(Query(text=text, intent=intent, entities=entities, era=era))
    return queries
