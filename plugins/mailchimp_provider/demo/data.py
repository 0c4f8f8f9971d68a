"""Realistic demo warehouse: the contract's source tables filled with generated shop data.

Everything is deterministic from ``seed``: the same call gives the same rows, so demo output and
tests are reproducible. People live in eight countries (US, GB, DE, FR, CA, AU, NL, ES) with
local names (including non-ASCII ones such as Müller or José), addresses, phone numbers and
email providers (gmail.com, outlook.com, yahoo.co.uk, gmx.de, orange.fr...), and about a quarter
are business customers with an address at their company's domain. No address uses example.com:
Mailchimp rejects such addresses as fake. Rows are generated table by table and inserted in
chunks, so memory stays flat at 100k customers / 100k orders.

Bad rows (``bad_rows=True``, the default). Each kind is a few rows on top of the requested
counts, found again by ``find_bad_rows`` under the kind's name:

customers
  * ``customer_missing_email``: email is NULL or blank.
  * ``customer_malformed_email``: ``"olivia.hughes@"``, ``"lucas.martin.outlook.com"``, ``"mia@gmail"``.
  * ``customer_fake_email``: ``test@test.com``, which Mailchimp rejects as "looks fake or invalid".
  * ``customer_duplicate_email``: an email that differs from another customer's only in case and
    surrounding whitespace. One copy is older than the original and one newer, so "the most
    recently updated row wins" is exercised both ways.
  * ``customer_no_marketing``: ``no_marketing`` is true: never sent to Mailchimp.
  * ``customer_guest``: a guest checkout (``is_guest``): only the first name may be sent.
  * ``customer_incomplete_address``: address1 present but city, postal code or country missing
    (Mailchimp's ADDRESS merge field rejects it: "Please enter a complete address").
  * ``customer_long_id``: customer_id longer than Mailchimp's 50-character e-commerce id limit.
  * ``customer_not_opted_in``: ``marketing_opt_in`` false (a buyer who did not agree to marketing).
  * ``erasure_request``: GDPR erasure requests for two existing customers and for one email that
    is not in ``customers`` at all.

catalogue and orders
  * ``product_without_variants``: a product with no variant row (sent as one variant copying it).
  * ``product_missing_title``: a product imported from a supplier feed with no title (required).
  * ``product_long_id``: a product_id longer than Mailchimp's 50-character id limit.
  * ``variant_negative_inventory``: inventory_quantity below zero (oversold).
  * ``order_negative_quantity``: an order line with a negative quantity.
  * ``order_unknown_currency``: currency ``XYZ``, not an ISO 4217 code.
  * ``order_missing_product``: an order line whose product_id is not in ``products``.
  * ``order_unknown_customer``: an order whose customer_id is not in ``customers`` and that has
    no ``customer_email`` to create the customer from.
  * ``order_without_lines``: an order with no lines (Mailchimp needs at least one).
  * ``order_promo_amount_out_of_range``: an order promo whose ``amount_discounted`` is negative, and
    one larger than the order itself (a discount of 7.49 recorded in cents).
  * ``order_unknown_financial_status``: financial status ``disputed``, which no status map knows.
  * ``order_long_id``: an order_id longer than Mailchimp's 50-character id limit.
  * ``promo_rule_percentage_out_of_range``: a percentage rule with amount 15 instead of 0.15.
  * ``promo_code_too_long``: a promo code longer than Mailchimp's 50 characters.
  * ``promo_code_missing_redemption_url``: an in-store-only code with no redemption URL (required).

Orders always come in every financial status (pending, paid, refunded, partially_refunded,
cancelled) and fulfillment status (unfulfilled, partial, fulfilled), bad rows or not. About one
order in 25 is a guest checkout (``guest_checkout_orders``): its customer_id (``G5…``) is not in
``customers``, and the order carries the buyer's ``customer_email``, ``customer_first_name`` and
``customer_last_name``, from which the e-commerce sync creates the customer. One guest checks
out twice under the same id. Guest checkouts are sendable, so they are not a bad-row kind.

``apply_demo_changes`` then mutates a few rows the way a day of business would (an email change,
an opt-out, a tag change, a cancelled order, a new customer with an order) for incremental runs.
"""

from __future__ import annotations

import itertools
import random
import unicodedata
from functools import lru_cache
from operator import itemgetter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from mailchimp_provider.warehouse.source_tables import create_source_tables, source_metadata
from mailchimp_provider.warehouse.tables import UtcDateTime, to_utc
from mailchimp_provider.warehouse.upsert import upsert

CHUNK = 5_000
EPOCH = datetime(2023, 1, 1, tzinfo=timezone.utc)
STORE_DOMAIN = "northpeak-outfitters.com"
KNOWN_CURRENCIES = ("USD", "GBP", "EUR", "CAD", "AUD")
FINANCIAL_STATUSES = ("pending", "paid", "refunded", "partially_refunded", "cancelled")
FULFILLMENT_STATUSES = ("unfulfilled", "partial", "fulfilled")

BAD_ROW_KINDS: dict[str, str] = {
    "customer_missing_email": "customer without an email address",
    "customer_malformed_email": "customer email that is not an address",
    "customer_fake_email": "customer email Mailchimp rejects as fake",
    "customer_duplicate_email": "customers whose emails differ only in case/whitespace",
    "customer_no_marketing": "customer flagged never to be sent",
    "customer_guest": "guest checkout customer",
    "customer_incomplete_address": "customer with a partial postal address",
    "customer_long_id": "customer id over 50 characters",
    "customer_not_opted_in": "customer who did not opt in to marketing",
    "erasure_request": "GDPR erasure request",
    "product_without_variants": "product with no variant rows",
    "variant_negative_inventory": "variant with negative inventory",
    "order_negative_quantity": "order line with a negative quantity",
    "order_unknown_currency": "order in a currency that is not ISO 4217",
    "order_missing_product": "order line for a product that does not exist",
    "order_unknown_customer": "order for a customer that does not exist",
    "order_without_lines": "order with no lines",
    "order_promo_amount_out_of_range": "order promo discounting less than 0 or more than the order",
    "order_unknown_financial_status": "order whose financial status no status map knows",
    "order_long_id": "order id over 50 characters",
    "product_missing_title": "product without a title",
    "product_long_id": "product id over 50 characters",
    "promo_rule_percentage_out_of_range": "percentage promo rule with amount outside 0..1",
    "promo_code_too_long": "promo code over 50 characters",
    "promo_code_missing_redemption_url": "promo code without a redemption URL",
}

GUEST_EVERY = 25
"""One order in this many is a guest checkout (customer only on the order)."""
GUEST_CUSTOMER_PREFIX = "G"


# -- reference data --------------------------------------------------------------------------

_COUNTRIES: list[dict[str, Any]] = [
    {
        "code": "US", "weight": 34, "currency": "USD", "phone": "+1 {a}{b}{c}-555-01{d}{e}", "tld": "com",
        "first": ["James", "Olivia", "Ethan", "Ava", "Noah", "Emma", "Liam", "Sophia", "Mason", "Harper",
                  "Logan", "Madison", "Carter", "Chloe", "Wyatt", "Abigail", "Mateo", "Camila"],
        "last": ["Johnson", "Williams", "Brown", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
                 "Anderson", "Thompson", "Moore", "Jackson", "Lee", "Walker", "Nguyen", "Patel"],
        "cities": [("Austin", "TX", "787##"), ("Portland", "OR", "972##"), ("Denver", "CO", "802##"),
                   ("Chicago", "IL", "606##"), ("Boston", "MA", "021##"), ("Seattle", "WA", "981##"),
                   ("Raleigh", "NC", "276##"), ("San Diego", "CA", "921##")],
        "streets": ["Maple Ave", "Oak Street", "Pine Road", "Cedar Lane", "Elm Street", "Lakeview Dr"],
        "domains": ["gmail.com", "gmail.com", "outlook.com", "yahoo.com", "icloud.com", "hotmail.com", "aol.com"],
    },
    {
        "code": "GB", "weight": 16, "currency": "GBP", "phone": "+44 20 7946 0{a}{b}{c}", "tld": "co.uk",
        "first": ["Oliver", "Amelia", "George", "Isla", "Harry", "Poppy", "Jack", "Freya", "Alfie",
                  "Evie", "Charlie", "Florence", "Archie", "Imogen"],
        "last": ["Smith", "Jones", "Taylor", "Evans", "Hughes", "Wright", "Roberts", "Walsh", "Clarke",
                 "Patel", "Khan", "Turner", "Morgan", "O'Brien"],
        "cities": [("London", "England", "SW1A #AA"), ("Manchester", "England", "M# #AB"),
                   ("Edinburgh", "Scotland", "EH# #QL"), ("Bristol", "England", "BS# #TH"),
                   ("Cardiff", "Wales", "CF## #AW"), ("Leeds", "England", "LS# #DY")],
        "streets": ["High Street", "Station Road", "Church Lane", "Victoria Road", "Mill Lane"],
        "domains": ["yahoo.co.uk", "btinternet.com", "gmail.com", "outlook.com", "hotmail.co.uk", "sky.com"],
    },
    {
        "code": "DE", "weight": 12, "currency": "EUR", "phone": "+49 30 {a}{b}{c}{d}{e}{a}{b}", "tld": "de",
        "first": ["Lukas", "Mia", "Leon", "Hannah", "Finn", "Lena", "Jonas", "Sophie", "Paul", "Marie",
                  "Felix", "Jürgen", "Jörg", "Anja"],
        "last": ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
                 "Hoffmann", "Schäfer", "Koch", "Groß"],
        "cities": [("Berlin", "BE", "10###"), ("München", "BY", "80###"), ("Hamburg", "HH", "20###"),
                   ("Köln", "NW", "50###"), ("Leipzig", "SN", "04###")],
        "streets": ["Hauptstraße", "Gartenweg", "Bahnhofstraße", "Lindenallee", "Schillerstraße"],
        "domains": ["gmx.de", "web.de", "t-online.de", "gmail.com", "posteo.de"],
    },
    {
        "code": "FR", "weight": 10, "currency": "EUR", "phone": "+33 1 {a}{b} {c}{d} {e}{a} {b}{c}", "tld": "fr",
        "first": ["Louis", "Chloé", "Gabriel", "Léa", "Hugo", "Manon", "Arthur", "Camille", "Jules",
                  "Inès", "Raphaël", "Zoé"],
        "last": ["Martin", "Bernard", "Dubois", "Thomas", "Robert", "Petit", "Durand", "Leroy",
                 "Moreau", "Lefèvre", "Girard", "Fournier"],
        "cities": [("Paris", "Île-de-France", "750##"), ("Lyon", "Auvergne-Rhône-Alpes", "6900#"),
                   ("Marseille", "Provence-Alpes-Côte d'Azur", "130##"), ("Toulouse", "Occitanie", "310##"),
                   ("Nantes", "Pays de la Loire", "440##")],
        "streets": ["Rue de la République", "Avenue Victor Hugo", "Rue Pasteur", "Boulevard Voltaire"],
        "domains": ["orange.fr", "free.fr", "laposte.net", "gmail.com", "sfr.fr"],
    },
    {
        "code": "CA", "weight": 10, "currency": "CAD", "phone": "+1 {a}{b}{c}-555-01{d}{e}", "tld": "ca",
        "first": ["Liam", "Charlotte", "William", "Olivia", "Benjamin", "Emily", "Samuel", "Léa",
                  "Nathan", "Chloe", "Jacob", "Maya"],
        "last": ["Tremblay", "Gagnon", "Roy", "Côté", "Bouchard", "Smith", "Wilson", "MacDonald",
                 "Campbell", "Chen", "Singh", "Leblanc"],
        "cities": [("Toronto", "ON", "M5V #T#"), ("Vancouver", "BC", "V6B #A#"), ("Montréal", "QC", "H2X #Y#"),
                   ("Calgary", "AB", "T2P #R#"), ("Halifax", "NS", "B3H #C#")],
        "streets": ["King Street W", "Main Street", "Rue Sainte-Catherine", "Granville Street"],
        "domains": ["gmail.com", "outlook.com", "rogers.com", "shaw.ca", "videotron.ca", "hotmail.com"],
    },
    {
        "code": "AU", "weight": 8, "currency": "AUD", "phone": "+61 2 {a}{b}{c}{d} {e}{a}{b}{c}", "tld": "com.au",
        "first": ["Jack", "Charlotte", "Oliver", "Mia", "William", "Ruby", "Thomas", "Matilda",
                  "Lachlan", "Isla", "Cooper", "Zara"],
        "last": ["Smith", "Jones", "Williams", "Brown", "Wilson", "Taylor", "Nguyen", "Kelly",
                 "Ryan", "Murphy", "Mitchell", "Harris"],
        "cities": [("Sydney", "NSW", "2###"), ("Melbourne", "VIC", "3###"), ("Brisbane", "QLD", "4###"),
                   ("Perth", "WA", "6###"), ("Adelaide", "SA", "5###")],
        "streets": ["George Street", "Collins Street", "Beach Road", "Queen Street"],
        "domains": ["bigpond.com", "gmail.com", "outlook.com", "optusnet.com.au", "icloud.com"],
    },
    {
        "code": "NL", "weight": 5, "currency": "EUR", "phone": "+31 20 {a}{b}{c} {d}{e}{a}{b}", "tld": "nl",
        "first": ["Daan", "Emma", "Sem", "Julia", "Lucas", "Tess", "Levi", "Sanne", "Bram", "Fenna"],
        "last": ["de Jong", "Jansen", "de Vries", "van den Berg", "Bakker", "Visser", "Smit", "Mulder"],
        "cities": [("Amsterdam", "NH", "10## AB"), ("Utrecht", "UT", "35## CD"), ("Rotterdam", "ZH", "30## EF"),
                   ("Eindhoven", "NB", "56## GH")],
        "streets": ["Keizersgracht", "Dorpsstraat", "Kerkstraat", "Stationsweg"],
        "domains": ["ziggo.nl", "kpnmail.nl", "gmail.com", "hotmail.nl", "outlook.com"],
    },
    {
        "code": "ES", "weight": 5, "currency": "EUR", "phone": "+34 91 {a}{b}{c} {d}{e} {a}{b}", "tld": "es",
        "first": ["Hugo", "Lucía", "Martín", "Sofía", "Pablo", "María", "Álvaro", "Paula", "José", "Carmen"],
        "last": ["García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Sánchez", "Pérez"],
        "cities": [("Madrid", "Madrid", "280##"), ("Barcelona", "Cataluña", "080##"),
                   ("Valencia", "Comunidad Valenciana", "460##"), ("Sevilla", "Andalucía", "410##")],
        "streets": ["Calle Mayor", "Gran Vía", "Calle de Alcalá", "Avenida de la Constitución"],
        "domains": ["telefonica.net", "gmail.com", "hotmail.es", "yahoo.es", "outlook.es"],
    },
]
_COUNTRY_WEIGHTS = [c["weight"] for c in _COUNTRIES]

_COMPANY_HEADS = ["Blue", "North", "Bright", "Silver", "Oak", "Harbor", "Summit", "Green", "Iron", "Maple",
                  "Cedar", "Copper", "Granite", "Willow", "Falcon", "Meadow"]
_COMPANY_TAILS = ["field", "gate", "stone", "wave", "ridge", "line", "works", "craft", "brook", "peak"]
_COMPANY_FORMS = {"US": "Inc.", "GB": "Ltd", "DE": "GmbH", "FR": "SARL", "CA": "Inc.", "AU": "Pty Ltd",
                  "NL": "B.V.", "ES": "S.L."}
_COMPANY_KINDS = ["Outdoor Supply", "Trading", "Sports", "Retail Group", "Adventures", "Co-op"]

_CUSTOMER_TYPES = [("Retail", 60), ("Wholesale", 0), ("VIP", 8), ("Staff", 2), (None, 30)]
_EXTRA_TAGS = ["Spring Sale 2025", "Loyalty Gold", "Early Access", "Newsletter Signup", "Black Friday",
               "Trail Club", "Back in Stock Alert"]

_PRODUCT_ADJ = ["Merino", "Ultralight", "Waterproof", "Insulated", "Packable", "Recycled", "Alpine",
                "Trail", "Classic", "Thermal", "Windproof", "Organic Cotton"]
_PRODUCT_NOUNS = [("Beanie", "Accessories"), ("Rain Jacket", "Outerwear"), ("Hiking Boot", "Footwear"),
                  ("Trail Running Shoe", "Footwear"), ("Daypack 24L", "Bags"), ("Fleece Hoodie", "Tops"),
                  ("Down Vest", "Outerwear"), ("Camp Mug", "Camp Kitchen"), ("Sleeping Bag", "Camping"),
                  ("Base Layer Top", "Tops"), ("Hiking Socks", "Accessories"), ("Trekking Poles", "Gear"),
                  ("Headlamp", "Gear"), ("Water Bottle 1L", "Camp Kitchen"), ("Softshell Pants", "Bottoms")]
_VENDORS = ["Northpeak", "Fjellkraft", "Cascade Supply", "Terra Nova Goods"]
_SIZES = ["XS", "S", "M", "L", "XL"]
_COLOURS = ["Black", "Slate Blue", "Forest Green", "Rust", "Sand", "Charcoal"]

_PROMO_RULES = [
    # id, title, description, amount, type, target
    ("PR-SPRING15", "Spring Sale 15%", "15% off the whole order during the spring sale", "0.15", "percentage", "total"),
    ("PR-FREESHIP", "Free shipping", "Free standard shipping on orders over 50", "0", "fixed", "shipping"),
    ("PR-WELCOME10", "Welcome 10 off", "10 off your first order", "10", "fixed", "total"),
    ("PR-SOCKS20", "20% off socks", "20% off every pair of hiking socks", "0.20", "percentage", "per_item"),
    ("PR-LOYAL5", "Loyalty 5%", "5% off for loyalty members", "0.05", "percentage", "total"),
]


# -- public API ------------------------------------------------------------------------------


def seed_demo_warehouse(
    engine: sa.Engine,
    *,
    customers: int = 500,
    products: int = 60,
    orders: int = 800,
    seed: int = 42,
    bad_rows: bool = True,
    schema: str | None = None,
) -> dict[str, int]:
    """Create the source tables (empty them if they hold rows) and fill them; returns row counts.

    The bad rows of the module docstring come on top of the requested counts.
    """
    if customers < 1 or products < 1 or orders < 0:
        raise ValueError("need at least one customer and one product, and a non-negative order count")
    md = create_source_tables(engine, schema=schema)
    t = {name.split(".")[-1]: table for name, table in md.tables.items()}
    gen = _Generator(seed, customers=customers, products=products, orders=orders, bad_rows=bad_rows)
    counts: dict[str, int] = {}
    with engine.begin() as conn:
        for table in reversed(md.sorted_tables):
            conn.execute(table.delete())
        counts["customers"] = _insert(conn, t["customers"], gen.customers())
        counts["products"] = _insert(conn, t["products"], gen.products())
        counts["product_variants"] = _insert(conn, t["product_variants"], gen.variants())
        counts["promo_rules"] = _insert(conn, t["promo_rules"], gen.promo_rules())
        counts["promo_codes"] = _insert(conn, t["promo_codes"], gen.promo_codes())
        counts.update(_insert_orders(conn, t, gen))
        counts["marketing_erasure_requests"] = _insert(conn, t["marketing_erasure_requests"], gen.erasures())
    return counts


def apply_demo_changes(
    engine: sa.Engine, seed: int = 1, *, now: datetime | None = None, schema: str | None = None
) -> dict[str, str]:
    """Mutate a few rows like a day of business; returns what changed (kind -> record id).

    Changes: ``email_changed``, ``opted_out``, ``tags_changed`` (customers), ``order_cancelled``,
    ``customer_added`` and ``order_added``. Picks are deterministic from ``seed`` and only touch
    sendable customers, so each change shows up as exactly one update in the next sync.
    """
    now = now or datetime.now(timezone.utc)
    rng = random.Random(f"changes-{seed}")
    t = {name.split(".")[-1]: table for name, table in source_metadata(schema).tables.items()}
    c, o = t["customers"], t["orders"]
    changes: dict[str, str] = {}
    with engine.begin() as conn:
        candidates = _sendable_customers(conn, t)
        if len(candidates) < 3:
            raise ValueError("apply_demo_changes needs a seeded demo warehouse (seed_demo_warehouse)")
        picked = rng.sample(candidates, 3)

        cid, email = picked[0]
        local, _, domain = email.partition("@")
        new_email = f"{local}.{rng.randint(10, 99)}@{rng.choice(['gmail.com', 'outlook.com', 'icloud.com'])}"
        conn.execute(c.update().where(c.c.customer_id == cid).values(email=new_email, updated_at=now))
        changes["email_changed"] = cid

        cid, _ = picked[1]
        conn.execute(c.update().where(c.c.customer_id == cid).values(marketing_opt_in=False, updated_at=now))
        changes["opted_out"] = cid

        cid, _ = picked[2]
        conn.execute(
            c.update().where(c.c.customer_id == cid).values(
                customer_type="VIP", tags="Loyalty Gold,Early Access", updated_at=now
            )
        )
        changes["tags_changed"] = cid

        paid = conn.execute(
            sa.select(o.c.order_id).where(o.c.financial_status == "paid").order_by(o.c.order_id).limit(200)
        ).scalars().all()
        if paid:
            oid = rng.choice(paid)
            conn.execute(
                o.update().where(o.c.order_id == oid).values(
                    financial_status="cancelled", fulfillment_status="unfulfilled", cancelled_at=now, updated_at=now
                )
            )
            changes["order_cancelled"] = oid

        gen = _Generator(seed + 7919, customers=1, products=1, orders=0, bad_rows=False)
        new_customer = next(gen.customers())
        new_customer.update(customer_id=f"CN{seed:05d}", created_at=now, updated_at=now)
        new_customer["email"] = new_customer["email"].replace("@", f".new{seed}@")
        if conn.execute(sa.select(c.c.customer_id).where(c.c.customer_id == new_customer["customer_id"])).first():
            conn.execute(c.delete().where(c.c.customer_id == new_customer["customer_id"]))
        conn.execute(c.insert(), [new_customer])
        changes["customer_added"] = new_customer["customer_id"]

        variant = conn.execute(
            sa.select(t["product_variants"]).where(t["product_variants"].c.inventory_quantity > 0)
            .order_by(t["product_variants"].c.variant_id).limit(1)
        ).mappings().first()
        if variant is not None:
            oid = f"ON{seed:05d}"
            for table in (t["order_lines"], t["order_promos"], o):
                conn.execute(table.delete().where(table.c.order_id == oid))
            price = Decimal(variant["price"]).quantize(Decimal("0.01"))
            conn.execute(o.insert(), [{
                "order_id": oid, "customer_id": new_customer["customer_id"],
                "currency_code": _country(new_customer["country_code"])["currency"],
                "order_total": price, "tax_total": Decimal("0.00"), "shipping_total": Decimal("0.00"),
                "discount_total": Decimal("0.00"), "financial_status": "paid",
                "fulfillment_status": "unfulfilled", "order_url": f"https://{STORE_DOMAIN}/orders/{oid}",
                "processed_at": now, "cancelled_at": None, "updated_at": now,
            }])
            conn.execute(t["order_lines"].insert(), [{
                "order_id": oid, "line_id": "1", "product_id": variant["product_id"],
                "variant_id": variant["variant_id"], "quantity": 1, "price": price, "discount": Decimal("0.00"),
            }])
            changes["order_added"] = oid
    return changes


def find_bad_rows(engine: sa.Engine, *, schema: str | None = None) -> dict[str, list[str]]:
    """Record ids of each bad-row kind (``BAD_ROW_KINDS``), found by querying the data itself."""
    t = {name.split(".")[-1]: table for name, table in source_metadata(schema).tables.items()}
    c, p, v, o, ol = t["customers"], t["products"], t["product_variants"], t["orders"], t["order_lines"]
    pr, pc, er, op = t["promo_rules"], t["promo_codes"], t["marketing_erasure_requests"], t["order_promos"]
    gross = (
        sa.select(sa.func.coalesce(sa.func.sum(ol.c.price * ol.c.quantity), 0))
        .where(ol.c.order_id == op.c.order_id).scalar_subquery()
    )
    shipping = (
        sa.select(sa.func.coalesce(sa.func.max(o.c.shipping_total), 0))
        .where(o.c.order_id == op.c.order_id).scalar_subquery()
    )
    norm_email = sa.func.lower(sa.func.trim(c.c.email))
    dup_emails = (
        sa.select(norm_email).where(c.c.email.is_not(None)).group_by(norm_email).having(sa.func.count() > 1)
    )
    queries: dict[str, sa.Select] = {
        "customer_missing_email": sa.select(c.c.customer_id).where(
            sa.or_(c.c.email.is_(None), sa.func.trim(c.c.email) == "")
        ),
        "customer_malformed_email": sa.select(c.c.customer_id).where(
            sa.func.trim(c.c.email) != "", sa.not_(sa.func.trim(c.c.email).like("%_@_%._%"))
        ),
        "customer_fake_email": sa.select(c.c.customer_id).where(norm_email.in_(["test@test.com"])),
        "customer_duplicate_email": sa.select(c.c.customer_id).where(norm_email.in_(dup_emails)),
        "customer_no_marketing": sa.select(c.c.customer_id).where(c.c.no_marketing.is_(True)),
        "customer_guest": sa.select(c.c.customer_id).where(c.c.is_guest.is_(True)),
        "customer_incomplete_address": sa.select(c.c.customer_id).where(
            c.c.address1.is_not(None),
            sa.or_(c.c.city.is_(None), c.c.postal_code.is_(None), c.c.country_code.is_(None)),
        ),
        "customer_long_id": sa.select(c.c.customer_id).where(sa.func.length(c.c.customer_id) > 50),
        "customer_not_opted_in": sa.select(c.c.customer_id).where(c.c.marketing_opt_in.is_(False)),
        "erasure_request": sa.select(sa.func.coalesce(er.c.customer_id, er.c.email)),
        "product_without_variants": sa.select(p.c.product_id).where(
            ~sa.exists().where(v.c.product_id == p.c.product_id)
        ),
        "variant_negative_inventory": sa.select(v.c.variant_id).where(v.c.inventory_quantity < 0),
        "order_negative_quantity": sa.select(ol.c.order_id).where(ol.c.quantity < 0),
        "order_unknown_currency": sa.select(o.c.order_id).where(o.c.currency_code.not_in(KNOWN_CURRENCIES)),
        "order_missing_product": sa.select(ol.c.order_id).where(
            ~sa.exists().where(p.c.product_id == ol.c.product_id)
        ),
        "order_unknown_customer": sa.select(o.c.order_id).where(
            ~sa.exists().where(c.c.customer_id == o.c.customer_id),
            sa.func.coalesce(sa.func.trim(o.c.customer_email), "") == "",
        ),
        "order_without_lines": sa.select(o.c.order_id).where(~sa.exists().where(ol.c.order_id == o.c.order_id)),
        "order_promo_amount_out_of_range": sa.select(op.c.order_id).where(
            sa.or_(op.c.amount_discounted < 0, op.c.amount_discounted > gross + shipping)
        ),
        "order_unknown_financial_status": sa.select(o.c.order_id).where(
            o.c.financial_status.not_in(FINANCIAL_STATUSES)
        ),
        "order_long_id": sa.select(o.c.order_id).where(sa.func.length(o.c.order_id) > 50),
        "product_missing_title": sa.select(p.c.product_id).where(
            sa.func.coalesce(sa.func.trim(p.c.title), "") == ""
        ),
        "product_long_id": sa.select(p.c.product_id).where(sa.func.length(p.c.product_id) > 50),
        "promo_rule_percentage_out_of_range": sa.select(pr.c.promo_rule_id).where(
            pr.c.type == "percentage", sa.or_(pr.c.amount < 0, pr.c.amount > 1)
        ),
        "promo_code_too_long": sa.select(pc.c.promo_code_id).where(sa.func.length(pc.c.code) > 50),
        "promo_code_missing_redemption_url": sa.select(pc.c.promo_code_id).where(
            sa.func.coalesce(sa.func.trim(pc.c.redemption_url), "") == ""
        ),
    }
    with engine.connect() as conn:
        return {kind: sorted({str(r) for r in conn.execute(q).scalars()}) for kind, q in queries.items()}


def guest_checkout_orders(engine: sa.Engine, *, schema: str | None = None) -> dict[str, str]:
    """``order_id -> customer_id`` of the orders whose customer is only on the order: not in
    ``customers``, but with a ``customer_email`` the e-commerce sync creates the customer from."""
    t = {name.split(".")[-1]: table for name, table in source_metadata(schema).tables.items()}
    c, o = t["customers"], t["orders"]
    query = sa.select(o.c.order_id, o.c.customer_id).where(
        ~sa.exists().where(c.c.customer_id == o.c.customer_id),
        sa.func.coalesce(sa.func.trim(o.c.customer_email), "") != "",
    )
    with engine.connect() as conn:
        return {str(oid): str(cid) for oid, cid in conn.execute(query)}


# -- generation ------------------------------------------------------------------------------


def _insert(conn: sa.Connection, table: sa.Table, rows: Iterator[dict[str, Any]]) -> int:
    """Insert in chunks: flat memory for generators, few round trips."""
    total = 0
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= CHUNK:
            total += _write(conn, table, chunk)
            chunk = []
    if chunk:
        total += _write(conn, table, chunk)
    return total


def _write(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> int:
    """Bulk insert without SQLAlchemy's per-row parameter processing (most of the cost at 100k rows).

    SQLite gets a driver-level executemany with values pre-converted the way SQLAlchemy stores
    them; PostgreSQL goes through ``upsert`` (COPY for large chunks). Other dialects, and tables
    whose key is generated, use a plain SQLAlchemy executemany.
    """
    if not rows:
        return 0
    generated_key = any(c.autoincrement is True for c in table.primary_key.columns)
    if conn.dialect.name == "sqlite":
        columns = list(rows[0])
        convert = [_sqlite_converter(table.c[c].type) for c in columns]
        prep = conn.dialect.identifier_preparer
        sql = (
            f"INSERT INTO {prep.format_table(table)} ({', '.join(prep.quote(c) for c in columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})"
        )
        get = itemgetter(*columns)
        converted = [(i, f) for i, f in enumerate(convert) if f is not None]
        params = []
        for row in rows:
            values = list(get(row)) if len(columns) > 1 else [get(row)]
            for i, f in converted:
                if values[i] is not None:
                    values[i] = f(values[i])
            params.append(tuple(values))
        conn.exec_driver_sql(sql, params)
    elif conn.dialect.name == "postgresql" and not generated_key:
        upsert(conn, table, rows, [c.name for c in table.primary_key.columns])
    else:
        conn.execute(table.insert(), rows)
    return len(rows)


def _sqlite_converter(type_: sa.types.TypeEngine) -> Any:
    if isinstance(type_, UtcDateTime):
        # SQLAlchemy's SQLite DATETIME storage format, in UTC (what UtcDateTime writes)
        def timestamp(v: Any) -> str:
            if isinstance(v, datetime) and v.tzinfo is timezone.utc:
                return v.replace(tzinfo=None).isoformat(" ", "microseconds")
            return to_utc(v).replace(tzinfo=None).isoformat(" ", "microseconds")

        return timestamp
    if isinstance(type_, sa.Numeric) and not isinstance(type_, sa.Float):
        return float
    return None


def _insert_orders(conn: sa.Connection, t: dict[str, sa.Table], gen: _Generator) -> dict[str, int]:
    """Orders with their lines and promos, flushed together every ``CHUNK`` orders."""
    buffers: dict[str, list[dict[str, Any]]] = {"orders": [], "order_lines": [], "order_promos": []}
    counts = dict.fromkeys(buffers, 0)

    def flush() -> None:
        for name, rows in buffers.items():
            counts[name] += _write(conn, t[name], rows)
            rows.clear()

    for order, lines, promos in gen.orders():
        buffers["orders"].append(order)
        buffers["order_lines"].extend(lines)
        buffers["order_promos"].extend(promos)
        if len(buffers["orders"]) >= CHUNK:
            flush()
    flush()
    return counts


@lru_cache(maxsize=4096)
def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.replace("ß", "ss")).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _country(code: str | None) -> dict[str, Any]:
    return next((c for c in _COUNTRIES if c["code"] == code), _COUNTRIES[0])


def _money(value: float) -> Decimal:
    return Decimal(str(round(value, 2))).quantize(Decimal("0.01"))


class _Rng(random.Random):
    """``random.Random`` with cheaper ``choice``/``randrange``/``randint`` built on ``random()``.

    The stdlib versions draw exact unbiased integers bit by bit, which dominated generation time;
    demo data does not need that precision. Still fully determined by the seed.
    """

    def choice(self, seq: Any) -> Any:  # type: ignore[override]
        return seq[int(self.random() * len(seq))]

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:  # type: ignore[override]
        if stop is None:
            start, stop = 0, start
        return start + int(self.random() * (stop - start))

    def randint(self, a: int, b: int) -> int:
        return a + int(self.random() * (b - a + 1))


_COUNTRY_CUM = list(itertools.accumulate(_COUNTRY_WEIGHTS))
_TYPE_VALUES = [t for t, _ in _CUSTOMER_TYPES]
_TYPE_CUM = list(itertools.accumulate(w for _, w in _CUSTOMER_TYPES))
_FIN_CUM = list(itertools.accumulate((6, 78, 5, 4, 7)))
_FUL_CUM = list(itertools.accumulate((10, 5, 85)))


class _Generator:
    """Row generators sharing one seeded RNG stream per table (so tables are independent)."""

    def __init__(self, seed: int, *, customers: int, products: int, orders: int, bad_rows: bool) -> None:
        self.seed = seed
        self.n_customers = customers
        self.n_products = products
        self.n_orders = orders
        self.bad_rows = bad_rows
        self.customer_ids: list[str] = []
        self.customer_country: dict[str, str] = {}
        self.variants_by_product: dict[str, list[tuple[str, Decimal]]] = {}
        self.product_ids: list[str] = []
        self.bad_product_ids: list[str] = []
        self.promo_codes_by_rule: dict[str, list[str]] = {}
        self.erasure_targets: list[tuple[str, str]] = []

    def _rng(self, table: str) -> random.Random:
        return _Rng(f"{self.seed}-{table}")

    # customers ------------------------------------------------------------------------------
    def _person(self, rng: random.Random, i: int) -> dict[str, Any]:
        country = rng.choices(_COUNTRIES, cum_weights=_COUNTRY_CUM)[0]
        first, last = rng.choice(country["first"]), rng.choice(country["last"])
        created = EPOCH + timedelta(days=rng.random() * 700, seconds=rng.randrange(86_400))
        updated = created + timedelta(days=rng.random() * 60)
        business = rng.random() < 0.25
        company = None
        if business:
            head, tail = rng.choice(_COMPANY_HEADS), rng.choice(_COMPANY_TAILS)
            company = f"{head}{tail} {rng.choice(_COMPANY_KINDS)} {_COMPANY_FORMS[country['code']]}"
            domain = f"{head.lower()}{tail}.{country['tld']}"
            email = f"{_ascii(first)}.{_ascii(last)}{i}@{domain}"
            customer_type = "Wholesale"
        else:
            style = rng.randrange(4)
            f, l = _ascii(first), _ascii(last)
            local = (f"{f}.{l}", f"{f}{l}", f"{f[0]}.{l}", f"{f}_{l}")[style]
            email = f"{local}{i}@{rng.choice(country['domains'])}"
            customer_type = rng.choices(_TYPE_VALUES, cum_weights=_TYPE_CUM)[0]
        d = int(rng.random() * 100_000)
        digits = {"a": d % 10, "b": d // 10 % 10, "c": d // 100 % 10, "d": d // 1000 % 10, "e": d // 10000}
        has_address = rng.random() < 0.85
        city, province, pattern = rng.choice(country["cities"])
        n_tags = rng.choice((0, 0, 1, 1, 2))
        tags = ",".join(rng.sample(_EXTRA_TAGS, n_tags)) if n_tags else None
        return {
            "customer_id": f"C{100000 + i}",
            "email": email,
            "first_name": first,
            "last_name": last,
            "company": company,
            "phone": country["phone"].format(**digits) if rng.random() < 0.7 else None,
            "customer_type": customer_type,
            "tags": tags,
            "address1": f"{rng.randint(1, 250)} {rng.choice(country['streets'])}" if has_address else None,
            "city": city if has_address else None,
            "province": province if has_address else None,
            "postal_code": _postal(rng, pattern) if has_address else None,
            "country_code": country["code"],
            "marketing_opt_in": True,
            "no_marketing": False,
            "is_guest": False,
            "created_at": created,
            "updated_at": updated,
        }

    def customers(self) -> Iterator[dict[str, Any]]:
        rng = self._rng("customers")
        first_rows: list[dict[str, Any]] = []
        for i in range(self.n_customers):
            row = self._person(rng, i)
            if self.bad_rows and i >= 5 and rng.random() < 0.12:
                row["marketing_opt_in"] = False  # a realistic share of buyers never opted in
            if len(first_rows) < 8:
                first_rows.append(dict(row))
            self._remember(row)
            yield row
        if self.bad_rows:
            yield from self._bad_customers(rng, first_rows)

    def _remember(self, row: dict[str, Any]) -> None:
        self.customer_ids.append(row["customer_id"])
        self.customer_country[row["customer_id"]] = row["country_code"]

    def _bad_customers(self, rng: random.Random, originals: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        n = 900000

        def bad(**changes: Any) -> dict[str, Any]:
            nonlocal n
            n += 1
            row = self._person(rng, n)
            row.update(customer_id=f"CX{n}", **changes)  # CX: never a normal C<number> id, at any size
            self._remember(row)
            return row

        yield bad(email=None)
        yield bad(email="   ")
        yield bad(email="olivia.hughes@")
        yield bad(email="lucas.martin.outlook.com")
        yield bad(email="mia@gmail")
        yield bad(email="test@test.com")
        # duplicates of real customers' emails, once older and once newer than the original
        for original, shift in zip(originals[:2], (-30, 30)):
            yield bad(
                email=f"  {original['email'].upper()} ",
                first_name=original["first_name"],
                last_name=original["last_name"],
                updated_at=original["updated_at"] + timedelta(days=shift),
                created_at=min(original["created_at"], original["updated_at"] + timedelta(days=shift)),
            )
        yield bad(no_marketing=True)
        yield bad(no_marketing=True, marketing_opt_in=False)
        yield bad(is_guest=True, last_name=None, phone=None, company=None, customer_type=None)
        yield bad(is_guest=True, marketing_opt_in=False, company=None, customer_type=None)
        yield bad(city=None, address1="14 Harbour View")
        yield bad(postal_code=None, country_code=None, address1="Flat 3, 22 Mill Lane")
        for suffix in ("shopify-legacy-import-2019-batch-07-customer-000417",
                       "crm:salesforce:0015g00000XyZ12AAB:contact:0035g00000Pq9RsTUV"):
            n += 1
            row = self._person(rng, n)
            row["customer_id"] = suffix
            self._remember(row)
            yield row
        yield bad(marketing_opt_in=False)
        # erasure requests target two ordinary customers
        self.erasure_targets = [(r["customer_id"], r["email"]) for r in originals[2:4]]

    # catalogue ------------------------------------------------------------------------------
    def products(self) -> Iterator[dict[str, Any]]:
        rng = self._rng("products")
        seen: set[str] = set()
        total = self.n_products + (2 if self.bad_rows else 0)
        for i in range(total):
            adj, (noun, category) = rng.choice(_PRODUCT_ADJ), rng.choice(_PRODUCT_NOUNS)
            title = f"{adj} {noun}"
            handle = "-".join(_ascii(w) or w for w in title.lower().split())
            if handle in seen:
                handle = f"{handle}-{i}"
            seen.add(handle)
            pid = f"P{1000 + i}"
            created = EPOCH + timedelta(days=rng.random() * 500)
            self.product_ids.append(pid)
            yield {
                "product_id": pid,
                "title": title,
                "handle": handle,
                "url": f"https://{STORE_DOMAIN}/products/{handle}",
                "description": f"The {title.lower()} from our {category.lower()} range, built for long days outside.",
                "category": category,
                "vendor": rng.choice(_VENDORS),
                "image_url": f"https://cdn.{STORE_DOMAIN}/images/{handle}.jpg",
                "published_at": created + timedelta(days=2) if rng.random() < 0.95 else None,
                "created_at": created,
                "updated_at": created + timedelta(days=rng.random() * 90),
            }
        if self.bad_rows:
            yield from self._bad_products()

    def _bad_products(self) -> Iterator[dict[str, Any]]:
        """Products the e-commerce sync must reject; never sold, so no order depends on them."""
        created = EPOCH + timedelta(days=400)
        bad = [
            # a supplier feed row that arrived without a title
            ("P-FEED-88213", None, "feed-88213"),
            # an id from a legacy import that kept the whole source reference (over 50 characters)
            ("legacy-import:magento2:catalog_product_entity:sku=NP-TENT-2P-GRN", "Two-Person Tent", "two-person-tent"),
        ]
        for pid, title, handle in bad:
            self.bad_product_ids.append(pid)
            yield {
                "product_id": pid, "title": title, "handle": handle,
                "url": f"https://{STORE_DOMAIN}/products/{handle}", "description": None,
                "category": "Camping", "vendor": _VENDORS[0], "image_url": None,
                "published_at": None, "created_at": created, "updated_at": created + timedelta(days=3),
            }

    def variants(self) -> Iterator[dict[str, Any]]:
        rng = self._rng("variants")
        no_variant = set(self.product_ids[-2:]) if self.bad_rows else set()
        negative_done = not self.bad_rows
        for pid in self.product_ids:
            if pid in no_variant:
                continue
            # shop prices: either "x.99" or round numbers
            if rng.random() < 0.5:
                base = rng.choice((12, 19, 29, 39, 49, 79, 119, 189, 249)) + 0.99
            else:
                base = float(rng.choice((15, 25, 35, 60, 95, 150)))
            options = rng.choice((["One Size"], _SIZES[1:4], _SIZES, rng.sample(_COLOURS, 2)))
            variants: list[tuple[str, Decimal]] = []
            for j, option in enumerate(options):
                vid = f"{pid}-{j + 1}"
                price = _money(base)
                inventory = rng.randint(0, 400)
                if not negative_done:
                    inventory, negative_done = -3, True
                variants.append((vid, price))
                yield {
                    "variant_id": vid,
                    "product_id": pid,
                    "title": option,
                    "sku": f"NP-{pid[1:]}-{_ascii(option)[:4].upper() or 'OS'}",
                    "price": price,
                    "inventory_quantity": inventory,
                    "url": f"https://{STORE_DOMAIN}/products/{pid}?variant={vid}",
                    "image_url": None,
                    "updated_at": EPOCH + timedelta(days=rng.random() * 600),
                }
            self.variants_by_product[pid] = variants
        for pid in self.bad_product_ids:  # one variant each (not sellable: see _bad_products)
            yield {
                "variant_id": f"{pid}-1", "product_id": pid, "title": "One Size", "sku": None,
                "price": Decimal("89.00"), "inventory_quantity": 5, "url": None, "image_url": None,
                "updated_at": EPOCH + timedelta(days=401),
            }

    # promotions -----------------------------------------------------------------------------
    def promo_rules(self) -> Iterator[dict[str, Any]]:
        rules = list(_PROMO_RULES)
        if self.bad_rows:
            rules.append(("PR-SUMMER15", "Summer 15", "15% off everything (entered as 15, not 0.15)", "15",
                          "percentage", "total"))
        for i, (rid, title, description, amount, kind, target) in enumerate(rules):
            starts = EPOCH + timedelta(days=30 * i)
            yield {
                "promo_rule_id": rid, "title": title, "description": description, "amount": Decimal(amount),
                "type": kind, "target": target, "starts_at": starts,
                "ends_at": starts + timedelta(days=60) if i % 2 == 0 else None,
                "enabled": i != 4, "created_at": starts - timedelta(days=3), "updated_at": starts - timedelta(days=1),
            }
        self._rules = [r[0] for r in rules]

    def promo_codes(self) -> Iterator[dict[str, Any]]:
        rng = self._rng("promo_codes")
        for rid in self._rules:
            base = rid.removeprefix("PR-")
            codes = [base] + [f"{base}-{rng.choice(['VIP', 'NEWS', 'APP'])}{k}" for k in range(rng.randint(0, 2))]
            if self.bad_rows and rid == "PR-WELCOME10":
                codes.append("WELCOME10-PARTNER-NEWSLETTER-AUTUMN-CAMPAIGN-2025-EXCLUSIVE")
            self.promo_codes_by_rule[rid] = codes
            for k, code in enumerate(codes):
                created = EPOCH + timedelta(days=rng.random() * 300)
                yield {
                    # ids stay short even for the too-long code: only its ``code`` is the bad field
                    "promo_code_id": f"PC-{code}" if len(code) <= 40 else f"PC-{base}-{k}",
                    "promo_rule_id": rid, "code": code,
                    "redemption_url": f"https://{STORE_DOMAIN}/discount/{code}",
                    "usage_count": rng.randint(0, 500), "enabled": True,
                    "created_at": created, "updated_at": created + timedelta(days=5),
                }
        if self.bad_rows and "PR-LOYAL5" in self._rules:
            # a code for the shop counter only: nobody filled in the (required) redemption URL
            created = EPOCH + timedelta(days=200)
            yield {
                "promo_code_id": "PC-LOYAL5-INSTORE", "promo_rule_id": "PR-LOYAL5", "code": "LOYAL5-INSTORE",
                "redemption_url": None, "usage_count": 12, "enabled": True,
                "created_at": created, "updated_at": created + timedelta(days=5),
            }

    # orders ---------------------------------------------------------------------------------
    def orders(self) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]]:
        """Each order with its lines and promos (totals depend on the lines)."""
        lines: list[dict[str, Any]] = []
        promos: list[dict[str, Any]] = []
        for order in self._orders(lines, promos):
            yield order, list(lines), list(promos)
            lines.clear()
            promos.clear()

    def _orders(self, lines: list[dict[str, Any]], promos: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        rng = self._rng("orders")
        ids = [c for c in self.customer_ids if len(c) <= 50]
        sellable = [(pid, v) for pid, vs in self.variants_by_product.items() for v in vs]
        codes = [(rid, code) for rid, cs in self.promo_codes_by_rule.items() for code in cs
                 if rid != "PR-SUMMER15" and len(code) <= 50]
        percent = {r[0]: Decimal(r[3]) for r in _PROMO_RULES if r[4] == "percentage"}
        statuses = list(FINANCIAL_STATUSES)
        guests = self._guests()
        for i in range(self.n_orders):
            oid = f"O{200000 + i}"
            cid = ids[int(len(ids) * rng.random() ** 1.6)]  # repeat buyers are common
            buyer: dict[str, Any] = {"customer_email": None, "customer_first_name": None, "customer_last_name": None}
            country = self.customer_country.get(cid)
            if i % GUEST_EVERY == GUEST_EVERY // 2:
                guest = next(guests)
                cid, country = guest["customer_id"], guest["country_code"]
                buyer = {"customer_email": guest["email"], "customer_first_name": guest["first_name"],
                         "customer_last_name": guest["last_name"]}
            currency = _country(country)["currency"]
            financial = statuses[i] if i < len(statuses) else rng.choices(statuses, cum_weights=_FIN_CUM)[0]
            fulfillment = FULFILLMENT_STATUSES[i % 3] if i < 3 else (
                "unfulfilled" if financial in ("pending", "cancelled")
                else rng.choices(FULFILLMENT_STATUSES, cum_weights=_FUL_CUM)[0]
            )
            processed = EPOCH + timedelta(days=rng.random() * 720, seconds=rng.randrange(86_400))
            subtotal = Decimal("0.00")
            for j in range(rng.choice((1, 2, 2, 3, 3, 3, 4, 5))):
                pid, (vid, price) = rng.choice(sellable)
                quantity = rng.choice((1, 1, 1, 2, 3))
                lines.append({"order_id": oid, "line_id": str(j + 1), "product_id": pid, "variant_id": vid,
                              "quantity": quantity, "price": price, "discount": Decimal("0.00")})
                subtotal += price * quantity
            discount = Decimal("0.00")
            if codes and rng.random() < 0.12:
                rid, code = rng.choice(codes)
                rate = percent.get(rid)
                discount = _money(float(subtotal * rate)) if rate is not None else min(Decimal("10.00"), subtotal)
                if rid == "PR-FREESHIP":
                    discount = Decimal("0.00")
                promos.append({"order_id": oid, "code": code, "amount_discounted": discount,
                               "type": "percentage" if rate is not None else "fixed"})
            shipping = Decimal("0.00") if subtotal >= 75 else Decimal("6.95")
            tax = _money(float(subtotal - discount) * 0.08)
            yield {
                "order_id": oid, "customer_id": cid, "currency_code": currency,
                "order_total": subtotal - discount + tax + shipping, "tax_total": tax,
                "shipping_total": shipping, "discount_total": discount,
                "financial_status": financial, "fulfillment_status": fulfillment,
                "order_url": f"https://{STORE_DOMAIN}/account/orders/{oid}",
                "processed_at": processed,
                "cancelled_at": processed + timedelta(hours=rng.randint(1, 72)) if financial == "cancelled" else None,
                "updated_at": processed + timedelta(days=rng.random() * 20),
                **buyer,
            }
        if self.bad_rows:
            # the bad orders' customers must be sendable, so that each order shows its own defect
            # (a customer with an erasure request is never sent by the e-commerce sync either)
            erased = {cid for cid, _ in self.erasure_targets}
            yield from self._bad_orders(rng, lines, promos, [c for c in ids if c not in erased], sellable)

    def _guests(self) -> Iterator[dict[str, Any]]:
        """Guest-checkout buyers: people absent from ``customers`` (ids ``G500000``...), with real-looking
        emails that no customer row has. The second guest is the first one checking out again."""
        rng = self._rng("guests")
        people: list[dict[str, Any]] = []
        for k in itertools.count():
            if k == 1:
                yield people[0]
                continue
            person = self._person(rng, 500_000 + k)
            person["customer_id"] = f"{GUEST_CUSTOMER_PREFIX}{500_000 + k}"
            people.append(person)
            yield person

    def _bad_orders(
        self, rng: random.Random, lines: list[dict[str, Any]], promos: list[dict[str, Any]], ids: list[str],
        sellable: list[tuple[str, Any]],
    ) -> Iterator[dict[str, Any]]:
        def order(oid: str, cid: str, currency: str = "USD", financial: str = "paid") -> dict[str, Any]:
            processed = EPOCH + timedelta(days=rng.random() * 720)
            return {
                "order_id": oid, "customer_id": cid, "currency_code": currency, "order_total": Decimal("49.99"),
                "tax_total": Decimal("0.00"), "shipping_total": Decimal("0.00"), "discount_total": Decimal("0.00"),
                "financial_status": financial, "fulfillment_status": "fulfilled",
                "order_url": f"https://{STORE_DOMAIN}/account/orders/{oid}", "processed_at": processed,
                "cancelled_at": None, "updated_at": processed + timedelta(days=1),
                "customer_email": None, "customer_first_name": None, "customer_last_name": None,
            }

        def line(oid: str, quantity: int = 1, product: tuple[str, str] | None = None) -> dict[str, Any]:
            pid, (vid, price) = sellable[0]
            if product is not None:
                pid, vid = product
            return {"order_id": oid, "line_id": "1", "product_id": pid, "variant_id": vid,
                    "quantity": quantity, "price": Decimal("49.99") if product else price, "discount": Decimal("0.00")}

        lines.append(line("OX900001", quantity=-1))
        yield order("OX900001", ids[0])
        lines.append(line("OX900002"))
        yield order("OX900002", ids[1], currency="XYZ")
        lines.append(line("OX900003", product=("P-DISCONTINUED-0042", "P-DISCONTINUED-0042-1")))
        yield order("OX900003", ids[2])
        lines.append(line("OX900004"))
        yield order("OX900004", "C999999999")  # unknown customer, and no customer_email to create it from
        yield order("OX900005", ids[3])  # no lines
        # promos: a discount stored with the wrong sign, and one stored in cents (749 for 7.49)
        for oid, cid, code, amount, kind in (("OX900006", ids[4], "WELCOME10", "-10.00", "fixed"),
                                             ("OX900007", ids[5], "SPRING15", "749.00", "percentage")):
            lines.append(line(oid))
            promos.append({"order_id": oid, "code": code, "amount_discounted": Decimal(amount), "type": kind})
            yield order(oid, cid)
        lines.append(line("OX900008"))
        yield order("OX900008", ids[6], financial="disputed")  # a chargeback: no status map knows it
        long_id = "amazon-mcf:114-3941689-8772232:fulfillment-order-00001"
        lines.append(line(long_id))
        yield order(long_id, ids[7])

    def erasures(self) -> Iterator[dict[str, Any]]:
        if not self.bad_rows:
            return
        for k, (cid, email) in enumerate(self.erasure_targets):
            yield {"customer_id": cid, "email": email, "requested_at": EPOCH + timedelta(days=700 + k)}
        yield {"customer_id": None, "email": "amelie.laurent88@orange.fr", "requested_at": EPOCH + timedelta(days=702)}


def _postal(rng: random.Random, pattern: str) -> str:
    """Fill a postal-code pattern: '#' is a digit, other characters are kept (``SW1A #AA``)."""
    return "".join(str(rng.randrange(10)) if ch == "#" else ch for ch in pattern)


def _sendable_customers(conn: sa.Connection, t: dict[str, sa.Table]) -> list[tuple[str, str]]:
    """Opted-in, non-guest customers with a plain, unique email and no erasure request."""
    c, er = t["customers"], t["marketing_erasure_requests"]
    norm = sa.func.lower(sa.func.trim(c.c.email))
    duplicated = sa.select(norm).group_by(norm).having(sa.func.count() > 1)
    rows = conn.execute(
        sa.select(c.c.customer_id, c.c.email)
        .where(
            c.c.marketing_opt_in.is_(True), c.c.no_marketing.is_(False), c.c.is_guest.is_(False),
            c.c.email.like("%_@_%._%"), c.c.email == sa.func.trim(c.c.email),
            sa.func.length(c.c.customer_id) <= 50, c.c.email != "test@test.com",
            norm.not_in(duplicated),
            ~sa.exists().where(er.c.customer_id == c.c.customer_id),
        )
        .order_by(c.c.customer_id)
        .limit(400)
    ).all()
    return [(cid, email) for cid, email in rows]
