"""The synthetic e-commerce dataset "shop": a catalogue and user histories from a known model.

Real logs hide the process that made them. The shop is drawn from a process we wrote down,
so a chapter can ask "did the model find what we planted?" and check the answer against
``Dataset.truth``. The committed copy lives in ``datasets/shop/`` (see its ``CARD.md``);
:func:`load_shop` reads it, :func:`generate_shop` draws a fresh one of any size.

>>> from course_lib.data.shop import generate_shop, load_shop
>>> shop = load_shop()                                  # the committed files, ~1 s
>>> small = generate_shop(seed=1, n_users=200, n_items=300)   # a tiny one for quick runs

The generating process
======================

Everything is drawn from one ``numpy.random.default_rng(seed)``, in a fixed order, so a
seed gives the same bytes on every machine with the course's pinned numpy.

1. **Catalogue.** 15 categories with 88 product types (``CATALOGUE`` below); each type has
   a median price, a share of the catalogue, description phrases and title variants.
   Every type gets at least 2 items, the rest are shared out by the types' weights. Each
   item gets a brand (a few invented brands per category; some brands make products in
   related categories, e.g. Voltix makes phones, phone accessories and computer
   accessories), a price (the type's median times a log-normal spread, sigma 0.35,
   ending in .99), a latent popularity ``pop ~ LogNormal(0, popularity_sigma)``
   (normalised to sum to 1), a release time (most items exist before the window opens;
   a fraction ``new_item_fraction`` is released during it; all items of the cold
   category are released after ``cold_launch``), an English title and a 1-3 sentence
   description (type-specific phrases, a category-level sentence, sometimes a generic
   sentence that every category shares). Accessories that fit a device (phone cases and
   screen protectors, lenses, instant film) name a compatible device in their title.
2. **Complements.** Product types form a directed graph ``TYPE_CHAIN`` (smartphone ->
   phone case -> screen protector, phone charger; laptop -> laptop bag -> wireless mouse;
   camera -> memory card -> tripod; espresso machine -> coffee beans -> coffee mug;
   running shoes -> running socks -> water bottle; ...). For every item of type A and
   every edge A -> B, up to 3 items of type B are its complements, drawn without
   replacement with weight popularity x 4 (same brand) x 30 (made for this very item).
3. **Users.** Each user belongs to a hidden segment (tech enthusiast, photographer,
   runner, parent, ...), a profile over categories. The user's taste at the start and at
   the end of their activity are two draws ``Dirichlet(taste_concentration * profile)``:
   sparse, 2-4 dominant categories. In between, taste drifts linearly:
   ``taste(f) = (1 - drift * f) * start + drift * f * end`` with ``f`` in [0, 1] the
   fraction of the user's active time gone. Each user also has a price sensitivity
   ``s ~ Normal(1, 0.7)`` and a brand loyalty ``b ~ Gamma(2, 0.5)``.
4. **Times.** History length ``L = min_history + round(LogNormal(mu, history_sigma))``,
   capped at ``max_history``, with ``mu`` set so the mean is about ``mean_history``. A user
   arrives at a random time in the first three quarters of the window and stays for 30-100%
   of the rest. Events come in sessions: a new session starts with probability 0.3;
   within a session the gap is 20 s + Exponential(4 min); the gaps between sessions fill
   the user's active span. Times are strictly increasing within a user.
5. **Events.** At each time ``t``, with probability ``p_complement`` the user tries a
   *complement step*: pick an anchor among their last 3 items (recency weights 1, 0.3,
   0.1; only anchors with an unseen, released complement count), then one of its
   complements with weight ``pop x price_fit x brand_boost x (3 if made for the
   anchor)``. Otherwise (or when no anchor qualifies) a *taste step*: a category from
   ``taste(f)`` restricted to categories that have launched by ``t``, then an item of
   that category with weight ``pop x price_fit x brand_boost``, where
   ``price_fit = exp(-s * log(price / type median))`` and ``brand_boost = 1 + b`` for
   brands the user already bought, else 1. Items already seen or not yet released get
   weight 0: nobody buys the same item twice, nothing is bought before its release.

Ground truth (``Dataset.truth``)
================================

=========================  =========================================================
key                        what it holds
=========================  =========================================================
``params``                 the generator's arguments (JSON-serialisable dict)
``categories``             the 15 category names, in catalogue order
``type_category``          dict product type -> category
``type_chain``             list of ``(from_type, to_type)`` complement edges
``segments``               dict segment -> {category: profile weight}
``segment_share``          dict segment -> probability a user belongs to it
``cold_category``          the category launched mid-window (``None`` if disabled)
``cold_category_launch``   its launch time (Unix seconds), or ``None``
``window_start``/``_end``  the simulated time window (Unix seconds, end exclusive)
``item_popularity``        Series item_id -> latent popularity (sums to 1)
``compatible_with``        Series accessory item_id -> the device item_id it is made for
``complements``            dict item_id -> list of complementary item_ids (items
                           whose type has no outgoing edge are absent)
``user_segment``           Series user_id -> segment name
``user_taste_start``       DataFrame user_id x category: taste when the user arrives
``user_taste_end``         DataFrame user_id x category: taste when the user leaves
``user_taste``             DataFrame user_id x category: time-averaged taste,
                           ``(1 - drift/2) * start + drift/2 * end``
``user_price_sensitivity`` Series user_id -> ``s`` (> 0: prefers cheaper items)
``user_brand_loyalty``     Series user_id -> ``b``
``events``                 DataFrame aligned row by row with ``interactions``:
                           ``reason`` ("taste" or "complement"), ``anchor_item_id``
                           (the item a complement step followed, 0 for taste steps),
                           ``session`` (0, 1, ... within each user)
=========================  =========================================================

Regenerate the committed files with ``python -m course_lib.data.shop --out datasets/shop``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .core import Dataset, datasets_dir, repo_root, sha256_file

__all__ = ["CATALOGUE", "SEGMENTS", "SHOP_FILES", "TYPE_CHAIN", "generate_shop", "load_shop", "save_shop",
           "verify_shop"]

# --------------------------------------------------------------------------------------
# The catalogue: categories, product types, brands and the words that describe them
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProductType:
    """One kind of product ("smartphone") and how to name, price and describe it.

    ``{a|b|c}`` inside a phrase is replaced by one of the options at random.
    """

    name: str                                  # lower case, as in the data: "smartphone"
    price: float                               # median price in dollars
    weight: float                              # share of the category's items (relative)
    features: tuple[str, ...]                  # noun phrases for descriptions
    variants: tuple[tuple[str, ...], ...] = ()  # title suffix: one option from each tuple
    fits: tuple[str, ...] = ()                 # device types this accessory is made for
    plural: bool = False                       # "running socks" take no article

    @property
    def noun(self) -> str:
        """The type as it appears in titles: each word capitalised ("Chef's Knife")."""
        return " ".join(w[:1].upper() + w[1:] for w in self.name.split(" "))


@dataclass(frozen=True)
class CategorySpec:
    """A category: its brands, its naming style, sentences about it, and its types."""

    name: str
    brands: tuple[str, ...]                    # most common first
    naming: str                                # "model" (Nova X12), "line" (Classic), "book"
    uses: tuple[str, ...]                      # category-level sentences
    types: tuple[ProductType, ...]
    weight: float = 1.0                        # share of the catalogue (relative)


P = ProductType  # short alias for the table below

CATALOGUE: tuple[CategorySpec, ...] = (
    CategorySpec("Phones", ("Voltix", "Nimbus", "Orbita", "Kairo"), "model", (
        "Ideal for streaming, gaming and video calls on the go.",
        "Stay connected with fast mobile data and crisp calls.",
        "Take sharp photos and share them in seconds.",
        "Runs the latest mobile apps smoothly.",
    ), (
        P("smartphone", 549, 3, (
            "a {6.1|6.4|6.7}-inch OLED display", "a {4500|5000|5500} mAh battery that lasts all day",
            "a triple-lens {48|50|108} MP camera", "5G connectivity", "fast {25|45|65} W charging",
            "a {90|120} Hz screen"),
          (("128 GB", "256 GB", "512 GB"),
           ("Midnight Black", "Glacier White", "Ocean Blue", "Sage Green", "Graphite"))),
        P("foldable phone", 1199, 1, (
            "a {7.6|8.0}-inch folding display", "a durable hinge rated for {200,000|300,000} folds",
            "a cover screen for quick replies", "a {4400|4800} mAh dual battery", "a {50|64} MP main camera"),
          (("256 GB", "512 GB"), ("Phantom Black", "Cream", "Lavender"))),
        P("rugged phone", 329, 1, (
            "an IP68 waterproof and dustproof body", "a drop-tested shell",
            "a {8000|10000} mAh battery for multi-day use", "a glove-friendly touch screen", "a built-in flashlight"),
          (("64 GB", "128 GB"), ("Black", "Army Green", "Orange"))),
    ), weight=0.8),
    CategorySpec("Phone Accessories", ("Voltix", "Nimbus", "GripGuard", "Orbita", "Amply"), "line", (
        "Protect and power up the phone you rely on every day.",
        "A small add-on that makes your phone more useful.",
        "Works with most recent smartphones.",
        "Keeps your mobile life running smoothly.",
    ), (
        P("phone case", 19, 3, (
            "a shock-absorbing bumper", "raised edges that protect the camera", "a slim, grippy finish",
            "precise cut-outs for buttons and ports", "built-in magnets for wireless charging"),
          (("Clear", "Matte Black", "Navy", "Rose", "Olive"),), fits=("smartphone", "foldable phone", "rugged phone")),
        P("screen protector", 12, 2, (
            "{9H|tempered} glass that resists scratches", "an oleophobic coating against fingerprints",
            "bubble-free installation with an alignment frame", "full edge-to-edge coverage",
            "a lifetime replacement promise"),
          (("1-Pack", "2-Pack", "3-Pack"),), fits=("smartphone", "foldable phone", "rugged phone")),
        P("phone charger", 25, 2, (
            "USB-C Power Delivery", "a compact foldable plug", "overheat and surge protection",
            "a {1|2} m braided USB-C cable", "two ports to charge two devices"),
          (("20 W", "30 W", "65 W"), ("White", "Black"))),
        P("wireless charger", 35, 1, (
            "{10|15} W Qi wireless charging", "a non-slip charging pad", "an LED status light that dims at night",
            "case-friendly charging through up to 5 mm"),
          (("Pad", "Stand", "3-in-1"),)),
        P("power bank", 39, 1, (
            "a high-capacity battery pack", "two USB-C ports", "pass-through charging",
            "a pocket-sized aluminium shell", "an LED charge indicator"),
          (("10,000 mAh", "20,000 mAh"), ("Black", "Silver"))),
        P("wireless earbuds", 89, 2, (
            "active noise cancellation", "up to {24|30|36} hours of playback with the charging case",
            "sweat-resistant IPX4 buds", "touch controls and a transparency mode", "Bluetooth 5.3 with low latency"),
          (("Black", "White", "Midnight Blue"),), plural=True),
    )),
    CategorySpec("Laptops", ("Nimbus", "Kestrel", "Arcwell"), "model", (
        "Powerful enough for work, study and creative projects.",
        "Take your office anywhere with a full day of battery.",
        "Multitask with dozens of browser tabs and apps open.",
        "A dependable computer for home and the office.",
    ), (
        P("laptop", 899, 3, (
            "a {14|15.6}-inch Full HD display", "plenty of RAM for multitasking", "a fast NVMe SSD",
            "a backlit keyboard", "an up-to-{10|12}-hour battery"),
          (("Intel Core i5", "Intel Core i7", "AMD Ryzen 7"), ("16 GB RAM", "32 GB RAM"), ("512 GB SSD", "1 TB SSD"))),
        P("ultrabook", 1299, 2, (
            "a thin aluminium chassis under {1.2|1.3} kg", "a {13.3|14}-inch high-resolution display",
            "an all-day {15|18}-hour battery", "Thunderbolt 4 ports", "a fingerprint reader"),
          (("16 GB RAM", "32 GB RAM"), ("512 GB SSD", "1 TB SSD"), ("Silver", "Space Grey"))),
        P("gaming laptop", 1599, 1, (
            "a dedicated NVIDIA GeForce RTX graphics card", "a {144|165|240} Hz display",
            "a per-key RGB keyboard", "an advanced cooling system with dual fans", "a {1 TB|2 TB} NVMe SSD"),
          (("RTX 4060", "RTX 4070", "RTX 4080"), ("16 GB RAM", "32 GB RAM"))),
        P("chromebook", 349, 1, (
            "ChromeOS with automatic updates", "a {11.6|14}-inch anti-glare screen", "fast boot in seconds",
            "local storage plus cloud backup", "a spill-resistant keyboard"),
          (("4 GB RAM", "8 GB RAM"), ("64 GB", "128 GB"))),
    ), weight=0.7),
    CategorySpec("Computer Accessories", ("Kestrel", "Keyforge", "Arcwell", "Voltix", "Portly"), "line", (
        "Build a more comfortable and productive desk setup.",
        "Plug and play with Windows, macOS and ChromeOS.",
        "An essential upgrade for your home office.",
        "Designed to work with laptops and desktop computers.",
    ), (
        P("laptop bag", 49, 2, (
            "a padded laptop compartment", "water-resistant fabric",
            "a luggage strap for travel", "organiser pockets for cables and chargers"),
          (("14-inch", "15.6-inch", "16-inch"), ("Black", "Grey", "Navy"))),
        P("wireless mouse", 29, 2, (
            "a silent-click {2.4 GHz|Bluetooth} connection", "an ergonomic contoured shape",
            "an adjustable {1600|4000} DPI sensor", "up to {12|18} months on one battery"),
          (("Black", "White", "Graphite"),)),
        P("mechanical keyboard", 89, 2, (
            "smooth, durable mechanical switches", "hot-swappable keys",
            "per-key RGB backlighting", "a detachable USB-C cable", "a compact 75% layout"),
          (("Brown Switches", "Red Switches", "Blue Switches"),)),
        P("USB-C hub", 39, 1, (
            "many ports in one slim body", "4K HDMI output", "100 W power pass-through",
            "an SD and microSD card reader", "a Gigabit Ethernet port"),
          (("6-in-1", "7-in-1", "8-in-1"),)),
        P("monitor", 249, 1, (
            "a sharp IPS panel", "{QHD|4K UHD} resolution", "a {75|144} Hz refresh rate",
            "a height-adjustable stand", "USB-C input with laptop charging"),
          (("24-inch", "27-inch", "32-inch"),)),
        P("webcam", 59, 1, (
            "smooth video at 30 fps", "a built-in noise-reducing microphone", "automatic light correction",
            "a privacy shutter", "a universal monitor clip"),
          (("1080p", "4K"),)),
    )),
    CategorySpec("Cameras", ("Lumora", "Fotek", "Kairo"), "model", (
        "Capture sharp photos and smooth video in any light.",
        "For travel, portraits and everyday photography.",
        "Made for creators who shoot photos and video.",
        "Record every moment in rich detail.",
    ), (
        P("mirrorless camera", 999, 2, (
            "a {24|33|45} MP full-frame sensor", "in-body image stabilisation",
            "fast hybrid autofocus with eye tracking", "{4K|6K} video recording",
            "a high-resolution electronic viewfinder"),
          (("Body Only", "with 28-70 mm Kit Lens"),)),
        P("DSLR camera", 749, 1, (
            "a {24|32} MP APS-C sensor", "an optical viewfinder", "{9|45}-point autofocus",
            "a battery good for {1,000|1,500} shots", "a weather-sealed body"),
          (("Body Only", "with 18-55 mm Lens"),)),
        P("action camera", 299, 2, (
            "{4K|5.3K} video at 60 fps", "waterproofing to {10|33} metres without a housing",
            "horizon-levelling stabilisation", "a front-facing selfie screen", "voice control"),
          (("Standard Kit", "Adventure Bundle"),)),
        P("instant camera", 89, 1, (
            "instant prints in about {90|120} seconds", "a built-in flash", "a selfie mirror",
            "automatic exposure"),
          (("Mint", "Pink", "Sky Blue", "Charcoal"),)),
    ), weight=0.6),
    CategorySpec("Photo Accessories", ("Lumora", "Fotek", "TriPoint", "SnapVault"), "line", (
        "Get more out of your camera on every shoot.",
        "Trusted by photographers and videographers.",
        "Protect your gear and keep shooting longer.",
        "Compatible with most popular cameras.",
    ), (
        P("memory card", 24, 2, (
            "plenty of storage for photos and video", "read speeds up to {170|200|300} MB/s",
            "a V30 rating for 4K video", "a shockproof, waterproof design"),
          (("64 GB", "128 GB", "256 GB"), ("SDXC", "microSDXC"))),
        P("tripod", 59, 2, (
            "legs that extend to {150|165} cm", "a ball head with a quick-release plate",
            "a built-in spirit level", "a {40|45} cm folded length for travel"),
          (("Aluminium", "Carbon Fibre"),)),
        P("camera bag", 69, 1, (
            "padded dividers for a camera and {2|3} lenses", "a weatherproof shell", "a side-access opening",
            "a tripod holder"),
          (("Sling", "Backpack", "Shoulder Bag"),)),
        P("camera lens", 449, 2, (
            "a fast aperture for low light", "sharp corner-to-corner optics", "fast, quiet autofocus motors",
            "optical stabilisation", "weather-sealed glass"),
          (("35 mm f/1.8", "50 mm f/1.8", "85 mm f/1.8", "24-70 mm f/2.8", "70-200 mm f/4"),),
          fits=("mirrorless camera", "DSLR camera")),
        P("lens filter", 29, 1, (
            "a {UV|circular polarising|ND} filter", "multi-coated optical glass", "a slim aluminium frame",
            "a screw-in mount"),
          (("58 mm", "67 mm", "77 mm"),)),
        P("instant film", 14, 1, (
            "rich, natural skin tones", "crisp instant prints", "credit-card sized photos",
            "film that develops in minutes"),
          (("10 Sheets", "20 Sheets", "40 Sheets"), ("Colour", "Monochrome")), fits=("instant camera",)),
    )),
    CategorySpec("Coffee & Tea", ("Brewhaus", "Roastery Lane", "Leaf & Kettle", "Crema"), "line", (
        "Start every morning with a perfect cup.",
        "Cafe-quality drinks in your own kitchen.",
        "For coffee lovers and tea drinkers alike.",
        "Brew a fresh, aromatic cup in minutes.",
    ), (
        P("espresso machine", 399, 2, (
            "a {15|19}-bar pump", "a steam wand for silky milk foam", "a built-in conical burr grinder",
            "a removable {1.8|2} litre water tank", "precise temperature control"),
          (("Stainless Steel", "Matte Black", "Cream"),)),
        P("drip coffee maker", 79, 1, (
            "a glass carafe", "a programmable timer", "a keep-warm hot plate",
            "a reusable gold-tone filter"),
          (("10-Cup", "12-Cup"), ("Black", "Steel"))),
        P("coffee grinder", 119, 1, (
            "{40|60} grind settings from espresso to French press", "conical steel burrs", "a low-noise motor",
            "a timer for consistent doses"),
          (("Black", "Silver"),)),
        P("coffee beans", 14, 4, (
            "{single-origin|house-blend} beans from {Ethiopia|Colombia|Brazil|Guatemala|Sumatra}",
            "a {light|medium|dark} roast", "tasting notes of {chocolate and caramel|berries and citrus|toasted nuts}",
            "beans roasted in small batches", "a one-way valve bag for freshness"),
          (("250 g", "500 g", "1 kg"), ("Whole Bean", "Ground")), plural=True),
        P("loose-leaf tea", 11, 3, (
            "{green|black|oolong|white} tea leaves", "a {floral|malty|grassy|smoky} aroma",
            "leaves picked by hand", "a resealable pouch that keeps the leaves fresh"),
          (("50 g", "100 g", "250 g"),)),
        P("milk frother", 39, 1, (
            "hot and cold foam at one touch", "a non-stick whisk", "a {240|300} ml capacity",
            "automatic shut-off"),
          (("White", "Black"),)),
    )),
    CategorySpec("Kitchen", ("Copper & Thyme", "Mesa", "Brewhaus", "Crema"), "line", (
        "Make everyday cooking easier and more fun.",
        "Built for busy home cooks.",
        "A kitchen essential that lasts for years.",
        "Cook, serve and store with confidence.",
    ), (
        P("coffee mug", 15, 2, (
            "a {350|450} ml ceramic body", "a comfortable wide handle",
            "a double-walled design that keeps drinks hot", "a glossy, dishwasher-safe glaze"),
          (("Set of 2", "Set of 4"), ("White", "Speckled Grey", "Terracotta"))),
        P("chef's knife", 79, 2, (
            "a high-carbon steel blade", "a full-tang ergonomic handle",
            "a razor-sharp edge honed by hand", "a protective blade guard"),
          (("20 cm", "21 cm"),)),
        P("cutting board", 29, 1, (
            "an {end-grain walnut|bamboo|acacia wood} surface", "a juice groove around the edge",
            "non-slip rubber feet", "a reversible design"),
          (("Small", "Large"),)),
        P("frying pan", 49, 2, (
            "a non-stick surface", "a heavy aluminium base for even heat", "a stay-cool handle",
            "a base that works on all hobs, induction included"),
          (("24 cm", "28 cm"),)),
        P("electric kettle", 45, 1, (
            "a {1.5|1.7} litre capacity", "rapid {2200|3000} W boiling", "variable temperature settings for tea",
            "automatic shut-off"),
          (("Brushed Steel", "Matte White", "Black"),)),
        P("blender", 89, 1, (
            "a {1000|1200} W motor", "a {1.5|2} litre tritan jar", "pulse and smoothie programs",
            "stainless-steel blades that crush ice"),
          (("Black", "Silver"),)),
        P("food storage containers", 24, 1, (
            "{10|16|24} airtight containers with lids", "BPA-free, freezer-safe plastic",
            "stackable shapes that save space", "microwave-safe bases"),
          (("10-Piece", "16-Piece", "24-Piece"),), plural=True),
    )),
    CategorySpec("Running", ("Stride", "Trailwind", "Pacer", "Pulse"), "line", (
        "Made for your daily run, from 5K to marathon.",
        "Light, breathable and ready for any pace.",
        "Trusted by runners on road and trail.",
        "Run further in comfort.",
    ), (
        P("running shoes", 119, 4, (
            "a responsive foam midsole", "an {8|10} mm heel-to-toe drop", "a breathable engineered mesh upper",
            "a grippy rubber outsole for road and trail", "reflective details for early runs"),
          (("US 7", "US 8", "US 9", "US 10", "US 11"), ("Black/White", "Volt Yellow", "Ocean Blue")), plural=True),
        P("running socks", 14, 2, (
            "a moisture-wicking merino blend", "arch support", "seamless toes that prevent blisters",
            "a {no-show|quarter|crew} cut"),
          (("3 Pairs", "6 Pairs"), ("S", "M", "L")), plural=True),
        P("running shorts", 34, 2, (
            "a lightweight quick-dry fabric", "a built-in liner", "a zip pocket for keys", "a {5|7}-inch inseam"),
          (("S", "M", "L", "XL"), ("Black", "Navy", "Coral")), plural=True),
        P("running jacket", 89, 1, (
            "a windproof, water-resistant shell", "a packable design that fits in its own pocket",
            "reflective trims", "underarm vents"),
          (("S", "M", "L", "XL"),)),
        P("GPS running watch", 249, 1, (
            "built-in GPS with pace and distance", "wrist-based heart-rate tracking",
            "up to {14|20} days of battery life", "training plans and recovery advice"),
          (("Black", "Slate", "White"),)),
        P("hydration belt", 29, 1, (
            "two {250|300} ml flasks", "a bounce-free elastic fit", "a zip pocket for gels and keys",
            "reflective trims"),
          (("S/M", "L/XL"),)),
    )),
    CategorySpec("Fitness", ("IronLeaf", "Zenflow", "Stride", "Pulse"), "line", (
        "Train at home or in the gym.",
        "Build strength, flexibility and endurance.",
        "For every workout, every day.",
        "Reach your fitness goals faster.",
    ), (
        P("yoga mat", 39, 2, (
            "a {4|6} mm cushioned surface", "a non-slip textured grip", "eco-friendly TPE material",
            "a carry strap"),
          (("Purple", "Teal", "Black", "Sand"),)),
        P("yoga block", 15, 1, (
            "high-density EVA foam", "bevelled edges for a comfortable grip", "support for deeper stretches",
            "a lightweight, washable design"),
          (("Set of 2", "Single"),)),
        P("dumbbells", 59, 2, (
            "adjustable weights from {2|5} to {20|24} kg", "a quick-change dial", "non-slip knurled grips",
            "a compact storage tray"),
          (("Pair", "Single"),), plural=True),
        P("resistance bands", 19, 1, (
            "{5|6} resistance levels", "natural latex bands", "a door anchor and handles", "a travel pouch"),
          (("Light", "Medium", "Heavy"),), plural=True),
        P("foam roller", 25, 1, (
            "a textured high-density surface", "deep-tissue massage for sore muscles", "a {33|45} cm length",
            "a hollow core that keeps its shape"),
          (("Black", "Blue"),)),
        P("fitness tracker", 99, 2, (
            "heart-rate and sleep tracking", "step, calorie and workout counting", "a {7|10|14}-day battery",
            "water resistance to 50 m"),
          (("Black", "Rose", "Mint"),)),
        P("protein powder", 39, 2, (
            "{20|25} g of protein per serving", "a smooth, easy-mixing texture",
            "whey isolate with little sugar", "{30|60} servings per tub"),
          (("1 kg", "2 kg"), ("Chocolate", "Vanilla", "Strawberry"))),
        P("water bottle", 19, 2, (
            "an insulated steel body", "a leak-proof lid", "insulation that keeps drinks cold for 24 hours",
            "a BPA-free design"),
          (("500 ml", "750 ml"), ("Black", "Sage", "Sky"))),
    )),
    CategorySpec("Books", ("Lantern Press", "Northwind Books", "Paperkite", "Meridian House"), "book", (
        "A book to get lost in.",
        "Perfect for the bedside table or a long journey.",
        "Praised by readers and critics.",
        "Printed on high-quality paper.",
    ), (
        P("novel", 14, 4, (
            "a gripping plot", "unforgettable characters", "a twist you will not see coming",
            "lyrical, moving prose"),
          (("Paperback", "Hardcover", "Ebook"),)),
        P("cookbook", 24, 1, (
            "step-by-step recipes", "full-colour food photography",
            "weeknight dinners in thirty minutes", "tips on seasoning and technique"),
          (("Paperback", "Hardcover"),)),
        P("travel guide", 19, 1, (
            "detailed city maps", "itineraries for {3|5|7} days", "tips on where to eat and stay",
            "insider advice from local writers"),
          (("Paperback", "Ebook"),)),
        P("children's book", 9, 2, (
            "bright, playful illustrations", "a story about friendship and courage",
            "rhymes that are fun to read aloud", "sturdy pages for little hands"),
          (("Board Book", "Hardcover", "Paperback"),)),
        P("science book", 18, 1, (
            "clear explanations of big ideas", "the latest research in plain language", "illustrated diagrams",
            "stories of great discoveries"),
          (("Paperback", "Hardcover", "Ebook"),)),
        P("self-help book", 16, 1, (
            "practical exercises for everyday life", "advice on habits and focus", "research-backed techniques",
            "short chapters to read in one sitting"),
          (("Paperback", "Ebook"),)),
    ), weight=1.4),
    CategorySpec("Toys", ("Bricktown", "Wobble & Co", "Starling Toys", "Tinker Lab"), "line", (
        "Hours of fun for kids and the whole family.",
        "Sparks creativity and imaginative play.",
        "A great present for birthdays and holidays.",
        "Safety tested to European and US toy standards.",
    ), (
        P("building set", 39, 2, (
            "{250|500|1,000} interlocking bricks", "step-by-step building instructions",
            "minifigures and accessories", "compatibility with other brick sets"),
          (("Castle", "Space Station", "City Fire Station", "Pirate Ship"),)),
        P("board game", 29, 2, (
            "room for {2|2-4|2-6} players", "games that last about {30|45|60} minutes",
            "easy rules and deep strategy", "a beautifully illustrated board"),
          (("Family Edition", "Strategy Edition"),)),
        P("plush toy", 19, 2, (
            "super-soft fabric", "embroidered eyes safe for babies", "a huggable {25|35} cm size",
            "machine-washable stuffing"),
          (("Bear", "Bunny", "Dinosaur", "Unicorn"),)),
        P("jigsaw puzzle", 17, 1, (
            "a striking, colourful image", "a poster of the finished picture", "thick, snug-fitting pieces",
            "artwork by independent illustrators"),
          (("500 Pieces", "1,000 Pieces", "1,500 Pieces"),)),
        P("remote-control car", 49, 1, (
            "a top speed of {20|30} km/h", "a rechargeable battery", "a 2.4 GHz controller",
            "off-road tyres and suspension"),
          (("Red", "Blue", "Green"),)),
        P("science kit", 34, 1, (
            "{20|30|50} hands-on experiments", "safe lab tools and goggles", "an illustrated guide",
            "lessons in chemistry and physics"),
          (("Chemistry", "Crystals", "Electronics"),)),
    )),
    CategorySpec("Beauty", ("Velvet Bloom", "Pure Dew", "Solace", "Marisol"), "line", (
        "Part of a simple daily self-care routine.",
        "Dermatologist tested and cruelty free.",
        "Suitable for all skin and hair types.",
        "Made with gentle, natural ingredients.",
    ), (
        P("shampoo", 12, 2, (
            "a sulphate-free formula", "{argan oil|tea tree|coconut} extract",
            "volume and shine for every hair type", "a fresh {citrus|herbal|floral} scent"),
          (("250 ml", "500 ml"),)),
        P("conditioner", 12, 2, (
            "a detangling formula", "{shea butter|argan oil|keratin} for smooth hair", "frizz control",
            "a lightweight rinse-out texture"),
          (("250 ml", "500 ml"),)),
        P("face cleanser", 16, 1, (
            "a gentle foaming gel", "{salicylic acid|green tea|micellar water} to clear pores",
            "a pH-balanced formula", "no drying alcohol"),
          (("150 ml", "250 ml"),)),
        P("face moisturizer", 26, 2, (
            "{hyaluronic acid|ceramides|niacinamide} for plump skin", "24-hour hydration",
            "a light, non-greasy texture", "SPF {15|30} protection"),
          (("50 ml", "100 ml"),)),
        P("sunscreen", 18, 1, (
            "broad-spectrum SPF {30|50}", "water resistance for {40|80} minutes", "no white cast",
            "reef-friendly filters"),
          (("50 ml", "150 ml"),)),
        P("lipstick", 19, 2, (
            "a {matte|satin|glossy} finish", "long-wear colour for up to {8|12} hours", "nourishing vitamin E",
            "a creamy, smooth glide"),
          (("Ruby Red", "Nude Rose", "Berry", "Coral", "Mauve"),)),
    )),
    CategorySpec("Home", ("Hearth & Loom", "Nordhem", "Casa Calma", "Lumen & Co"), "line", (
        "Make your home cosy and welcoming.",
        "Designed to bring calm to everyday living.",
        "Easy care and built to last.",
        "A finishing touch for any room.",
    ), (
        P("bed sheets", 59, 2, (
            "{300|400|600} thread-count cotton", "deep pockets that fit thick mattresses", "a soft sateen weave",
            "fabric that gets softer with every wash"),
          (("Single", "Double", "King"), ("White", "Grey", "Sage")), plural=True),
        P("pillow", 35, 2, (
            "a hypoallergenic fill", "a breathable cotton cover", "{soft|medium|firm} support",
            "a removable, washable case"),
          (("Standard", "King"),)),
        P("throw blanket", 45, 1, (
            "a chunky knit", "soft {fleece|wool|cotton}", "a generous {130x170|150x200} cm size", "fringed edges"),
          (("Oatmeal", "Charcoal", "Rust"),)),
        P("table lamp", 49, 1, (
            "a {linen|ceramic|brass} shade", "a warm dimmable light", "a touch switch", "an E27 bulb socket"),
          (("White", "Black", "Brass"),)),
        P("LED light bulbs", 14, 1, (
            "{806|1,055} lumens of warm white light", "{8|10} W power use that saves energy",
            "a {15,000|25,000}-hour lifetime", "an E27 screw fitting"),
          (("4-Pack", "6-Pack"),), plural=True),
        P("scented candle", 19, 2, (
            "a {lavender|vanilla|cedarwood|sea salt} scent", "a natural soy wax blend",
            "a burn time of {40|60} hours", "a cotton wick"),
          (("Small", "Large"),)),
        P("towel set", 39, 1, (
            "{550|700} gsm cotton", "quick-drying loops", "two bath towels and two hand towels",
            "colours that do not fade"),
          (("White", "Stone", "Navy"),)),
    )),
    CategorySpec("Garden", ("Greenthumb", "Fernway", "Hearth & Loom", "Bloomfield"), "line", (
        "Everything you need for a thriving garden.",
        "Grow flowers, herbs and vegetables with ease.",
        "For balconies, backyards and allotments.",
        "Built for outdoor use season after season.",
    ), (
        P("garden hose", 39, 1, (
            "a kink-resistant hose", "UV-stabilised layers", "brass fittings",
            "a wall-mounted reel"),
          (("15 m", "25 m", "30 m"),)),
        P("hose nozzle", 14, 1, (
            "{7|8|10} spray patterns", "a comfortable trigger grip", "a flow-control dial",
            "a leak-proof connector"),
          (("Green", "Grey"),)),
        P("plant pots", 24, 2, (
            "drainage holes in every pot", "frost-proof ceramic", "matching saucers", "a {matte|glazed} finish"),
          (("Set of 3", "Set of 5"),), plural=True),
        P("flower seeds", 5, 2, (
            "a mix of {sunflower|wildflower|zinnia|cosmos} seeds", "easy-to-grow annuals",
            "a sowing guide on the packet", "flowers that attract bees and butterflies"),
          (("Single Packet", "Pack of 3"),), plural=True),
        P("potting soil", 12, 1, (
            "a peat-free compost mix", "slow-release plant food", "good drainage for containers",
            "a resealable bag"),
          (("20 L", "40 L", "50 L"),)),
        P("pruning shears", 24, 1, (
            "sharp bypass blades", "a safety lock", "cushioned handles",
            "the strength to cut branches up to {20|25} mm"),
          (("Standard", "Heavy Duty"),), plural=True),
        P("watering can", 19, 1, (
            "a generous capacity", "a removable rose head for gentle watering", "a galvanised steel body",
            "a balanced handle"),
          (("5 L", "10 L"),)),
    )),
)
del P

# Complementary products: "who bought a <from> next buys a <to>". A chain, not a clique:
# smartphone -> phone case -> screen protector. Some edges cross categories
# (coffee beans -> coffee mug, running socks -> water bottle, cookbook -> chef's knife).
TYPE_CHAIN: tuple[tuple[str, str], ...] = (
    ("smartphone", "phone case"), ("smartphone", "screen protector"), ("smartphone", "phone charger"),
    ("smartphone", "wireless earbuds"),
    ("foldable phone", "phone case"), ("foldable phone", "screen protector"), ("foldable phone", "wireless charger"),
    ("rugged phone", "phone case"), ("rugged phone", "power bank"),
    ("phone case", "screen protector"), ("phone case", "phone charger"), ("phone charger", "power bank"),
    ("laptop", "laptop bag"), ("laptop", "wireless mouse"), ("laptop", "USB-C hub"),
    ("ultrabook", "laptop bag"), ("ultrabook", "USB-C hub"),
    ("gaming laptop", "mechanical keyboard"), ("gaming laptop", "monitor"), ("chromebook", "laptop bag"),
    ("laptop bag", "wireless mouse"), ("wireless mouse", "mechanical keyboard"), ("monitor", "webcam"),
    ("mirrorless camera", "memory card"), ("mirrorless camera", "camera lens"),
    ("DSLR camera", "memory card"), ("DSLR camera", "camera lens"),
    ("action camera", "memory card"), ("instant camera", "instant film"),
    ("memory card", "tripod"), ("camera lens", "lens filter"), ("tripod", "camera bag"),
    ("espresso machine", "coffee beans"), ("espresso machine", "milk frother"),
    ("drip coffee maker", "coffee beans"), ("coffee grinder", "coffee beans"), ("coffee beans", "coffee mug"),
    ("electric kettle", "loose-leaf tea"), ("loose-leaf tea", "coffee mug"),
    ("cookbook", "chef's knife"), ("cookbook", "frying pan"), ("chef's knife", "cutting board"),
    ("blender", "protein powder"),
    ("running shoes", "running socks"), ("running shoes", "running shorts"), ("running socks", "water bottle"),
    ("GPS running watch", "hydration belt"), ("running jacket", "running shorts"),
    ("yoga mat", "yoga block"), ("dumbbells", "resistance bands"), ("dumbbells", "protein powder"),
    ("fitness tracker", "water bottle"),
    ("children's book", "plush toy"), ("board game", "jigsaw puzzle"),
    ("shampoo", "conditioner"), ("face cleanser", "face moisturizer"), ("face moisturizer", "sunscreen"),
    ("bed sheets", "pillow"), ("pillow", "throw blanket"), ("table lamp", "LED light bulbs"),
    ("garden hose", "hose nozzle"), ("flower seeds", "potting soil"), ("potting soil", "plant pots"),
    ("plant pots", "watering can"),
)

# Hidden user segments: a profile over categories (weights, renormalised) and a share of users.
SEGMENTS: dict[str, dict[str, float]] = {
    "tech enthusiast": {"Phones": 1.0, "Phone Accessories": 1.0, "Laptops": 0.8, "Computer Accessories": 1.0,
                        "Cameras": 0.3},
    "photographer": {"Cameras": 1.0, "Photo Accessories": 1.0, "Laptops": 0.4, "Books": 0.3, "Phones": 0.3},
    "coffee lover": {"Coffee & Tea": 1.0, "Kitchen": 0.8, "Books": 0.4, "Home": 0.3},
    "home cook": {"Kitchen": 1.0, "Coffee & Tea": 0.5, "Books": 0.5, "Home": 0.6},
    "runner": {"Running": 1.0, "Fitness": 0.8, "Phone Accessories": 0.3, "Beauty": 0.2},
    "fitness fan": {"Fitness": 1.0, "Running": 0.5, "Beauty": 0.4, "Kitchen": 0.3},
    "parent": {"Toys": 1.0, "Books": 0.8, "Home": 0.5, "Beauty": 0.3},
    "home and garden": {"Home": 1.0, "Garden": 1.0, "Kitchen": 0.4, "Beauty": 0.3},
    "student": {"Laptops": 0.8, "Computer Accessories": 0.7, "Books": 0.7, "Coffee & Tea": 0.5, "Phones": 0.3},
}
SEGMENT_SHARE: dict[str, float] = {
    "tech enthusiast": 0.15, "photographer": 0.09, "coffee lover": 0.11, "home cook": 0.11, "runner": 0.11,
    "fitness fan": 0.10, "parent": 0.12, "home and garden": 0.08, "student": 0.13,
}
SEGMENT_BACKGROUND = 0.05  # profile weight of every category outside the segment's own

# Words for names. Model names (Nova X12) for devices, product lines (Signature) elsewhere.
SERIES = ("Nova", "Aero", "Edge", "Core", "Prime", "Flex", "Zen", "Orbit", "Apex", "Vista", "Luma", "Terra",
          "Swift", "Astra", "Volt", "Halo")
CODE_LETTERS = ("X", "S", "M", "R", "G", "Z")
LINES = ("Classic", "Everyday", "Pro", "Essential", "Signature", "Urban", "Alpine", "Harbor", "Meadow",
         "Summit", "Coastal", "Studio", "Nordic", "Heritage", "Flex", "Air")
BRAND_WEIGHTS = (1.0, 0.75, 0.55, 0.4, 0.3)   # the first brand of a category is the biggest
GENERIC_SENTENCES = (
    "Backed by a two-year warranty.", "Free returns within 30 days.", "A customer favourite.",
    "Makes a thoughtful gift.", "Ships in recyclable packaging.", "Great value for money.",
    "Loved by thousands of customers.", "Now back in stock.",
)
_BOOK_WORDS = {
    "adj": ("Silent", "Hidden", "Last", "Golden", "Winter", "Distant", "Quiet", "Burning", "Secret", "Lost",
            "Midnight", "Wild"),
    "noun": ("Harbor", "Orchard", "River", "Letter", "Lighthouse", "Kingdom", "Station", "Island", "Mountain",
             "Summer", "Promise", "Garden"),
    "kitchen": ("Weeknight", "Green", "Mediterranean", "Family", "Slow", "Simple", "Spice", "Sunday"),
    "city": ("Lisbon", "Kyoto", "Oslo", "Marrakesh", "Vancouver", "Rome", "Seoul", "Lima", "Prague",
             "Cape Town"),
    "name": ("Pip", "Luna", "Milo", "Rosie", "Otto", "Hazel", "Theo", "Ivy"),
    "animal": ("Fox", "Bear", "Owl", "Rabbit", "Hedgehog", "Otter", "Tiger", "Penguin"),
    "science": ("Atoms", "Stars", "Oceans", "Genes", "Time", "Light", "Memory", "Weather"),
    "habit": ("Focus", "Calm", "Rest", "Change", "Saying No", "Small Wins"),
}

# --------------------------------------------------------------------------------------
# Files and defaults
# --------------------------------------------------------------------------------------

DEFAULT_SEED = 2024
SHOP_FILES = (  # what save_shop writes and load_shop verifies (SHA256SUMS lists them all)
    "interactions.csv.gz", "items.csv.gz", "users.csv.gz",
    "truth.json", "truth_items.csv.gz", "truth_users.csv.gz", "truth_events.csv.gz",
)
REGENERATE = "python -m course_lib.data.shop --out datasets/shop"
FORMAT_VERSION = 1

_WITHIN_SESSION_MIN_S = 20.0       # smallest gap between two events of one session
_WITHIN_SESSION_MEAN_S = 240.0     # plus an exponential with this mean
_MIN_SESSION_GAP_S = 600.0         # sessions are at least 10 minutes apart
_P_NEW_SESSION = 0.3               # chance that the next event starts a new session
_ANCHOR_RECENCY = (1.0, 0.3, 0.1)  # complement step: weight of the last, 2nd last, 3rd last item
_COMPLEMENTS_PER_EDGE = 3
_SAME_BRAND_BONUS = 4.0            # complement lists prefer the anchor's brand ...
_MADE_FOR_BONUS = 30.0             # ... and above all accessories made for that very item
_MADE_FOR_PICK_BONUS = 3.0         # and a complement step prefers them again
_PRICE_SIGMA = 0.35                # log-normal spread of prices around the type's median


# --------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------


def generate_shop(
    seed: int = DEFAULT_SEED,
    n_users: int = 6000,
    n_items: int = 3000,
    mean_history: float = 25.0,
    *,
    min_history: int = 5,
    max_history: int = 200,
    history_sigma: float = 0.9,
    p_complement: float = 0.45,
    popularity_sigma: float = 1.3,
    taste_concentration: float = 3.0,
    drift: float = 0.4,
    new_item_fraction: float = 0.06,
    cold_category: str | None = "Garden",
    cold_launch: float = 0.6,
    start: str = "2023-01-01",
    days: int = 365,
) -> Dataset:
    """Draw a shop: catalogue, users and their histories (the process in the module docstring).

    Args:
        seed: seed of the one ``numpy.random.default_rng`` that draws everything.
        n_users: number of users (each has at least ``min_history`` interactions).
        n_items: catalogue size; at least 2 per product type (176).
        mean_history: target mean number of interactions per user.
        min_history, max_history: bounds of a user's history length.
        history_sigma: log-normal spread of history lengths (the long tail).
        p_complement: probability that an event tries a complement of a recent item.
        popularity_sigma: log-normal sigma of item popularity (larger: longer tail).
        taste_concentration: Dirichlet concentration of user taste (smaller: sparser).
        drift: how far taste moves from its start to its end draw (0: no drift).
        new_item_fraction: fraction of items (outside the cold category) released
            during the window rather than before it.
        cold_category: a category whose items are all released at ``cold_launch``
            (a cold-start domain), or ``None``.
        cold_launch: when the cold category launches, as a fraction of the window.
        start: first day of the window (UTC, ``YYYY-MM-DD``).
        days: length of the window in days.

    Returns:
        A :class:`Dataset` named "shop" with ``interactions`` (user_id, item_id,
        timestamp), ``items``, ``users`` and ``truth`` (see the module docstring).

    Raises:
        ValueError: a parameter out of range (the message says which and what to use).
    """
    params = _check_params(
        seed=seed, n_users=n_users, n_items=n_items, mean_history=mean_history, min_history=min_history,
        max_history=max_history, history_sigma=history_sigma, p_complement=p_complement,
        popularity_sigma=popularity_sigma, taste_concentration=taste_concentration, drift=drift,
        new_item_fraction=new_item_fraction, cold_category=cold_category, cold_launch=cold_launch,
        start=start, days=days)
    rng = np.random.default_rng(params["seed"])
    window_start = int(pd.Timestamp(params["start"], tz="UTC").timestamp())
    window_end = window_start + params["days"] * 86400
    cold_at = (window_start + int(params["cold_launch"] * (window_end - window_start))
               if params["cold_category"] is not None else None)

    cat = _make_catalogue(rng, params, window_start, window_end, cold_at)
    users = _make_users(rng, params, window_start, window_end)
    events = _simulate(rng, params, cat, users)

    # ---- observable tables -----------------------------------------------------------
    categories = [c.name for c in CATALOGUE]
    interactions = pd.DataFrame({
        "user_id": events["user"] + 1,
        "item_id": events["item"] + 1,
        "timestamp": events["timestamp"],
    })
    user_ids = np.arange(1, params["n_users"] + 1, dtype=np.int64)
    users_table = pd.DataFrame({"user_id": user_ids, "signup_timestamp": users["signup"]})

    # ---- ground truth ----------------------------------------------------------------
    start_taste = pd.DataFrame(users["taste_start"], index=pd.Index(user_ids, name="user_id"), columns=categories)
    end_taste = pd.DataFrame(users["taste_end"], index=pd.Index(user_ids, name="user_id"), columns=categories)
    has_compat = cat["compatible"] >= 0
    truth: dict[str, Any] = {
        "params": params,
        "categories": categories,
        "type_category": {t.name: c.name for c in CATALOGUE for t in c.types},
        "type_chain": [tuple(e) for e in TYPE_CHAIN],
        "segments": {s: dict(p) for s, p in SEGMENTS.items()},
        "segment_share": dict(SEGMENT_SHARE),
        "cold_category": params["cold_category"],
        "cold_category_launch": cold_at,
        "window_start": window_start,
        "window_end": window_end,
        "item_popularity": pd.Series(cat["pop"], index=pd.Index(np.arange(1, params["n_items"] + 1), name="item_id"),
                                     name="popularity"),
        "compatible_with": pd.Series(cat["compatible"][has_compat] + 1,
                                     index=pd.Index(np.flatnonzero(has_compat) + 1, name="item_id"),
                                     name="compatible_with"),
        "complements": {i + 1: [int(j) + 1 for j in comp] for i, comp in enumerate(cat["complements"]) if len(comp)},
        "user_segment": pd.Series(np.array(list(SEGMENTS))[users["segment"]], index=start_taste.index,
                                  name="segment").astype("str"),
        "user_taste_start": start_taste,
        "user_taste_end": end_taste,
        "user_taste": _mean_taste(start_taste, end_taste, params["drift"]),
        "user_price_sensitivity": pd.Series(users["price_sensitivity"], index=start_taste.index,
                                            name="price_sensitivity"),
        "user_brand_loyalty": pd.Series(users["brand_loyalty"], index=start_taste.index, name="brand_loyalty"),
        "events": pd.DataFrame({
            "user_id": interactions["user_id"],
            "item_id": interactions["item_id"],
            "timestamp": interactions["timestamp"],
            "reason": pd.Series(np.where(events["complement"], "complement", "taste")).astype("str"),
            "anchor_item_id": events["anchor"] + 1,
            "session": events["session"],
        }),
    }
    ds = Dataset(name="shop", interactions=interactions, items=cat["table"], users=users_table, truth=truth,
                 source=f"generate_shop(seed={params['seed']}, n_users={params['n_users']}, "
                        f"n_items={params['n_items']})")
    # The simulation emits events user by user in time order, which is exactly the order
    # Dataset sorts into; so truth["events"] stays aligned row by row with interactions.
    assert np.array_equal(ds.interactions["item_id"].to_numpy(), truth["events"]["item_id"].to_numpy())
    return ds


def _check_params(**p: Any) -> dict[str, Any]:
    """Validate generate_shop's arguments; return them as plain JSON types."""

    def integer(name: str, low: int) -> int:
        v = p[name]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {v!r} ({type(v).__name__})")
        if v < low:
            raise ValueError(f"{name} must be at least {low}, got {v}")
        return int(v)

    def number(name: str, low: float, high: float, *, open_low: bool = False) -> float:
        v = p[name]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
            raise ValueError(f"{name} must be a number, got {v!r}")
        if v < low or v > high or (open_low and v == low):
            bracket = "(" if open_low else "["
            raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {v}")
        return float(v)

    n_types = sum(len(c.types) for c in CATALOGUE)
    out: dict[str, Any] = {"seed": integer("seed", 0), "n_users": integer("n_users", 1)}
    n_items = integer("n_items", 1)
    if n_items < 2 * n_types:
        raise ValueError(f"n_items={n_items} is too small: the catalogue has {n_types} product types and "
                         f"needs at least 2 items of each; use n_items >= {2 * n_types}")
    out["n_items"] = n_items
    out["min_history"] = integer("min_history", 1)
    out["max_history"] = integer("max_history", out["min_history"])
    out["mean_history"] = number("mean_history", out["min_history"], out["max_history"], open_low=True)
    if out["mean_history"] >= out["max_history"]:
        raise ValueError(f"mean_history={out['mean_history']} must be below max_history={out['max_history']}")
    out["history_sigma"] = number("history_sigma", 0.0, 3.0)
    out["p_complement"] = number("p_complement", 0.0, 1.0)
    out["popularity_sigma"] = number("popularity_sigma", 0.0, 4.0)
    out["taste_concentration"] = number("taste_concentration", 0.0, 1000.0, open_low=True)
    out["drift"] = number("drift", 0.0, 1.0)
    out["new_item_fraction"] = number("new_item_fraction", 0.0, 0.5)
    names = [c.name for c in CATALOGUE]
    cold = p["cold_category"]
    if cold is not None and cold not in names:
        raise ValueError(f"unknown cold_category {cold!r}; choose one of: {', '.join(names)} (or None)")
    out["cold_category"] = cold
    out["cold_launch"] = number("cold_launch", 0.0, 0.9, open_low=True)
    day = p["start"]
    if not isinstance(day, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
        raise ValueError(f"start must be a date like '2023-01-01', got {day!r}")
    try:
        out["start"] = pd.Timestamp(day).strftime("%Y-%m-%d")
    except ValueError as err:
        raise ValueError(f"start must be a real date like '2023-01-01', got {day!r}") from err
    out["days"] = integer("days", 30)
    return out


# ---- catalogue -----------------------------------------------------------------------


def _allocate(n: int, weights: np.ndarray, minimum: int) -> np.ndarray:
    """Split n into len(weights) integer counts >= minimum, proportional to weights.

    Largest-remainder rounding, so the counts sum to n exactly and the result is
    deterministic.
    """
    spare = n - minimum * len(weights)
    exact = spare * weights / weights.sum()
    counts = np.floor(exact).astype(np.int64)
    leftover = spare - int(counts.sum())
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:leftover]] += 1
    return counts + minimum


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def _fill(text: str, rng: np.random.Generator) -> str:
    """Replace each ``{a|b|c}`` in text by one of its options (innermost first, so they nest)."""
    def choose(m: re.Match[str]) -> str:
        options = m.group(1).split("|")
        return options[int(rng.integers(len(options)))]
    while "{" in text:
        text = _PLACEHOLDER.sub(choose, text)
    return text


def _article(phrase: str) -> str:
    """'a' or 'an' for a singular noun phrase (by sound: 'a USB-C hub', 'an espresso machine')."""
    if phrase.startswith(("USB", "ultra")):
        return "an" if phrase.startswith("ultra") else "a"
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def _join(parts: list[str]) -> str:
    """['a', 'b', 'c'] -> 'a, b and c'."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _describe(rng: np.random.Generator, ptype: ProductType, spec: CategorySpec, brand: str, line: str) -> str:
    """A 1-3 sentence description: features of the type, a category sentence, maybe filler.

    The type's noun appears in some templates and not in others, so a text model has to
    read the features, not just look for one keyword.
    """
    n_feat = len(ptype.features)
    chosen = [_fill(ptype.features[i], rng) for i in rng.permutation(n_feat)[:3]]
    noun = ptype.name
    this = "These" if ptype.plural else "This"
    opening = noun if ptype.plural else f"{_article(noun)} {noun}"
    opening = opening[:1].upper() + opening[1:]  # not str.capitalize(): keep "USB-C", "DSLR"
    templates = [
        lambda f: f"{opening} with {f[0]} and {f[1]}.",
        lambda f: f"{this} {noun} from {brand} {'bring' if ptype.plural else 'brings'} you {_join(f)}.",
        lambda f: f"Features {f[0]} and {f[1]}.",
        lambda f: f"Built around {f[0]}, with {_join(f[1:])}.",
        lambda f: f"Designed with {_join(f)}.",
    ]
    if line:  # books have no product line
        templates.append(lambda f: f"The {brand} {line} {noun}: {_join(f)}.")
    k = int(rng.integers(len(templates)))
    n_used = 2 if k in (0, 2) else 3
    sentences = [templates[k](chosen[:n_used])]
    if rng.random() < 0.75:
        sentences.append(_fill(spec.uses[int(rng.integers(len(spec.uses)))], rng))
    if rng.random() < 0.35:
        sentences.append(GENERIC_SENTENCES[int(rng.integers(len(GENERIC_SENTENCES)))])
    return " ".join(sentences)


def _book_title(rng: np.random.Generator, type_name: str) -> str:
    """An invented book title that fits the kind of book."""
    w = {k: v[int(rng.integers(len(v)))] for k, v in _BOOK_WORDS.items()}
    if type_name == "novel":
        return f"The {w['adj']} {w['noun']}: A Novel"
    if type_name == "cookbook":
        return f"The {w['kitchen']} Kitchen: {int(rng.integers(6, 13)) * 10} Recipes"
    if type_name == "travel guide":
        return _fill(f"{{{w['city']} Travel Guide|{w['city']} in {{3|5|7}} Days|Walking {w['city']}}}", rng)
    if type_name == "children's book":
        return f"{w['name']} the Brave Little {w['animal']}"
    if type_name == "science book":
        return _fill(f"{{A Short History of|The Hidden World of|The Secret Life of}} {w['science']}", rng)
    return _fill(f"{{The Art of|A Year of|Ten Lessons in|The Little Book of}} {w['habit']}", rng)  # self-help


def _make_catalogue(rng: np.random.Generator, params: dict[str, Any], window_start: int, window_end: int,
                    cold_at: int | None) -> dict[str, Any]:
    """Items: type, category, brand, price, popularity, release, title, description, complements.

    Arrays are indexed by ``item_id - 1``.
    """
    n = params["n_items"]
    types = [(ci, t) for ci, c in enumerate(CATALOGUE) for t in c.types]
    type_names = [t.name for _, t in types]
    cat_of_type = np.array([ci for ci, _ in types])
    # share of the catalogue: category weight, split among its types by their weights
    weights = np.array([CATALOGUE[ci].weight * t.weight / sum(u.weight for u in CATALOGUE[ci].types)
                        for ci, t in types])
    counts = _allocate(n, weights, minimum=2)
    # item ids are shuffled so that an id says nothing about the category
    type_of = np.repeat(np.arange(len(types)), counts)[rng.permutation(n)]
    cat_of = cat_of_type[type_of]

    # brands: global list, each item drawn from its category's brands
    brand_names = sorted({b for c in CATALOGUE for b in c.brands})
    brand_index = {b: i for i, b in enumerate(brand_names)}
    brand_of = np.empty(n, dtype=np.int64)
    for ci, c in enumerate(CATALOGUE):
        members = np.flatnonzero(cat_of == ci)
        w = np.array(BRAND_WEIGHTS[: len(c.brands)])
        picks = rng.choice(len(c.brands), size=len(members), p=w / w.sum())
        brand_of[members] = [brand_index[c.brands[k]] for k in picks]

    # latent popularity: long-tailed, normalised; quantised to the precision saved on disk
    pop = rng.lognormal(0.0, params["popularity_sigma"], size=n)
    pop = _quantise(pop / pop.sum(), "%.6e")

    # price: the type's median times a log-normal spread, ending in .99 (x9.99 above $100)
    median = np.array([t.price for _, t in types], dtype=float)[type_of]
    raw = median * np.exp(rng.normal(0.0, _PRICE_SIGMA, size=n))
    price = np.where(raw >= 100, np.floor(raw / 10) * 10 + 9.99, np.floor(raw) + 0.99)
    price = _quantise(price, "%.2f")
    rel_price = np.log(price / median)  # > 0: dearer than the type's median

    # release: before the window for most; some during it; the cold category at its launch
    span = window_end - window_start
    release = window_start - rng.integers(1, 3 * 365, size=n) * 86400
    is_new = rng.random(n) < params["new_item_fraction"]
    release = np.where(is_new, window_start + (0.05 + 0.9 * rng.random(n)) * span, release)
    if cold_at is not None:
        cold_ci = [c.name for c in CATALOGUE].index(params["cold_category"])
        in_cold = cat_of == cold_ci
        late = np.minimum(rng.exponential(20 * 86400, size=n), 60 * 86400)  # most within weeks of launch
        release = np.where(in_cold, cold_at + late, release)
    release = release.astype(np.int64)

    # names: a model name for devices (Nova X12), a product line elsewhere (Signature)
    line = np.empty(n, dtype=object)
    for i in range(n):
        naming = CATALOGUE[cat_of[i]].naming
        if naming == "model":
            line[i] = (f"{SERIES[int(rng.integers(len(SERIES)))]} "
                       f"{CODE_LETTERS[int(rng.integers(len(CODE_LETTERS)))]}{int(rng.integers(2, 60))}")
        elif naming == "line":
            line[i] = LINES[int(rng.integers(len(LINES)))]
        else:
            line[i] = ""

    # accessories made for one device ("Phone Case for Voltix Nova X12"): the device is drawn
    # by popularity, 8x more likely of the accessory's own brand; the accessory cannot come
    # out before the device it fits
    compatible = np.full(n, -1, dtype=np.int64)
    for ti, (_, t) in enumerate(types):
        if not t.fits:
            continue
        devices = np.flatnonzero(np.isin(type_of, [type_names.index(f) for f in t.fits]))
        for i in np.flatnonzero(type_of == ti):
            w = pop[devices] * np.where(brand_of[devices] == brand_of[i], 8.0, 1.0)
            d = devices[_pick(w, rng.random())]
            compatible[i] = d
            release[i] = max(release[i], release[d])

    titles: list[str] = []
    descriptions: list[str] = []
    used: set[str] = set()
    for i in range(n):
        spec = CATALOGUE[cat_of[i]]
        t = types[type_of[i]][1]
        brand = brand_names[brand_of[i]]
        for attempt in range(30):  # titles are unique: draw again on a clash
            if attempt and spec.naming == "line":
                line[i] = LINES[int(rng.integers(len(LINES)))]
            variant = ", ".join(opts[int(rng.integers(len(opts)))] for opts in t.variants)
            if spec.naming == "book":
                title = f"{_book_title(rng, t.name)} ({variant})"
            else:
                title = f"{brand} {line[i]} {t.noun}"
                if compatible[i] >= 0:
                    d = compatible[i]
                    title += f" for {brand_names[brand_of[d]]} {line[d]}"
                if variant:
                    title += f", {variant}"
            if title not in used:
                break
        edition = 2
        while title in used:  # rare: a crowded type in a big catalogue
            title = f"{title.split(' - Edition ')[0]} - Edition {edition}"
            edition += 1
        used.add(title)
        titles.append(title)
        descriptions.append(_describe(rng, t, spec, brand, line[i]))

    complements = _make_complements(rng, type_of, type_names, brand_of, pop, compatible)

    table = pd.DataFrame({
        "item_id": np.arange(1, n + 1, dtype=np.int64),
        "title": pd.Series(titles, dtype="str"),
        "description": pd.Series(descriptions, dtype="str"),
        "category": pd.Series([CATALOGUE[c].name for c in cat_of], dtype="str"),
        "product_type": pd.Series([type_names[t] for t in type_of], dtype="str"),
        "brand": pd.Series([brand_names[b] for b in brand_of], dtype="str"),
        "price": price,
        "release_timestamp": release,
    })
    return {"table": table, "type_of": type_of, "cat_of": cat_of, "brand_of": brand_of, "pop": pop,
            "rel_price": rel_price, "release": release, "compatible": compatible, "complements": complements,
            "n_brands": len(brand_names)}


def _make_complements(rng: np.random.Generator, type_of: np.ndarray, type_names: list[str], brand_of: np.ndarray,
                      pop: np.ndarray, compatible: np.ndarray) -> list[np.ndarray]:
    """For each item, its complementary items (indices), following TYPE_CHAIN.

    For an edge A -> B, every item of type A gets up to 3 items of type B, drawn without
    replacement with weight ``pop x 4 (same brand) x 30 (made for this item)``: the
    Efraimidis-Spirakis trick, keep the largest ``log(u) / w``.
    """
    n = len(type_of)
    parts: list[list[np.ndarray]] = [[] for _ in range(n)]
    for a, b in TYPE_CHAIN:
        sources = np.flatnonzero(type_of == type_names.index(a))
        targets = np.flatnonzero(type_of == type_names.index(b))
        k = min(_COMPLEMENTS_PER_EDGE, len(targets))
        w = (pop[targets][None, :]
             * np.where(brand_of[targets][None, :] == brand_of[sources][:, None], _SAME_BRAND_BONUS, 1.0)
             * np.where(compatible[targets][None, :] == sources[:, None], _MADE_FOR_BONUS, 1.0))
        keys = np.log(rng.random(w.shape)) / w            # (|A|, |B|); larger is better
        best = np.argsort(-keys, axis=1, kind="stable")[:, :k]
        for row, i in enumerate(sources):
            parts[i].append(targets[best[row]])
    return [np.concatenate(p) if p else np.empty(0, dtype=np.int64) for p in parts]


# ---- users -----------------------------------------------------------------------------


def _make_users(rng: np.random.Generator, params: dict[str, Any], window_start: int,
                window_end: int) -> dict[str, np.ndarray]:
    """Hidden user parameters, history lengths and activity spans."""
    n = params["n_users"]
    categories = [c.name for c in CATALOGUE]
    seg_names = list(SEGMENTS)
    share = np.array([SEGMENT_SHARE[s] for s in seg_names])
    segment = rng.choice(len(seg_names), size=n, p=share / share.sum())
    profiles = np.array([[SEGMENTS[s].get(c, SEGMENT_BACKGROUND) for c in categories] for s in seg_names])
    alpha = params["taste_concentration"] * profiles / profiles.sum(axis=1, keepdims=True)
    taste_start = np.vstack([rng.dirichlet(alpha[s]) for s in segment])
    taste_end = np.vstack([rng.dirichlet(alpha[s]) for s in segment])
    # saved with 5 decimals; use exactly what is saved so the truth is the truth
    taste_start = _quantise(taste_start, "%.5f")
    taste_end = _quantise(taste_end, "%.5f")

    price_sensitivity = _quantise(rng.normal(1.0, 0.7, size=n), "%.4f")
    brand_loyalty = _quantise(rng.gamma(2.0, 0.5, size=n), "%.4f")

    # history length: min + log-normal with mean (mean_history - min), capped
    extra_mean = params["mean_history"] - params["min_history"]
    mu = math.log(extra_mean) - params["history_sigma"] ** 2 / 2
    length = params["min_history"] + np.rint(rng.lognormal(mu, params["history_sigma"], size=n)).astype(np.int64)
    length = np.minimum(length, params["max_history"])

    # activity: arrive in the first 3/4 of the window (earlier is likelier), stay for 30-100% of the rest
    span = window_end - window_start
    arrive = window_start + (rng.random(n) ** 1.5) * 0.75 * span
    active = (window_end - 1 - arrive) * (0.3 + 0.7 * rng.random(n))
    signup = (arrive - rng.exponential(90 * 86400, size=n)).astype(np.int64)
    return {"segment": segment, "taste_start": taste_start, "taste_end": taste_end,
            "price_sensitivity": price_sensitivity, "brand_loyalty": brand_loyalty, "length": length,
            "arrive": arrive, "active": active, "signup": signup}


def _session_times(rng: np.random.Generator, length: int, arrive: float, active: float) -> tuple[np.ndarray,
                                                                                                  np.ndarray]:
    """Event times (int seconds, strictly increasing) and session numbers for one user."""
    new_session = rng.random(length) < _P_NEW_SESSION
    new_session[0] = True
    within = _WITHIN_SESSION_MIN_S + rng.exponential(_WITHIN_SESSION_MEAN_S, size=length)
    raw = rng.exponential(1.0, size=length)
    gaps = np.where(new_session, 0.0, within)
    breaks = new_session.copy()
    breaks[0] = False
    if breaks.any():
        # the gaps between sessions share what is left of the active span
        budget = max(active - gaps.sum() - _MIN_SESSION_GAP_S * breaks.sum(), 0.0)
        gaps[breaks] = _MIN_SESSION_GAP_S + raw[breaks] * budget / raw[breaks].sum()
    times = np.floor(arrive + np.cumsum(gaps)).astype(np.int64)
    return times, np.cumsum(new_session) - 1


# ---- the event simulation ----------------------------------------------------------------


def _pick(weights: np.ndarray, u: float) -> int:
    """Index drawn with probability proportional to weights (>= 0, not all 0), given u in [0, 1)."""
    cum = np.cumsum(weights)
    return int(min(np.searchsorted(cum, u * cum[-1], side="right"), len(cum) - 1))


def _simulate(rng: np.random.Generator, params: dict[str, Any], cat: dict[str, Any],
              users: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Generate every user's history event by event (step 5 of the module docstring)."""
    n_cat = len(CATALOGUE)
    pop, rel_price, release, brand_of = cat["pop"], cat["rel_price"], cat["release"], cat["brand_of"]
    complements, compatible = cat["complements"], cat["compatible"]
    cat_items = [np.flatnonzero(cat["cat_of"] == c) for c in range(n_cat)]
    cat_release = [release[items] for items in cat_items]
    cat_brand = [brand_of[items] for items in cat_items]
    launch = np.array([r.min() for r in cat_release])  # a category opens with its first item
    drift, p_comp = params["drift"], params["p_complement"]
    recency = np.array(_ANCHOR_RECENCY)

    seen = np.zeros(len(pop), dtype=bool)
    bought_brand = np.zeros(cat["n_brands"], dtype=bool)
    out_user, out_item, out_time, out_comp, out_anchor, out_session = [], [], [], [], [], []

    for u in range(params["n_users"]):
        times, sessions = _session_times(rng, int(users["length"][u]), users["arrive"][u], users["active"][u])
        coins = rng.random((len(times), 4))  # complement?, which anchor, which category, which item
        t0, t1 = users["taste_start"][u], users["taste_end"][u]
        loyalty = users["brand_loyalty"][u]
        # popularity x price fit, for every item (this user's price sensitivity)
        base = pop * np.exp(-users["price_sensitivity"][u] * rel_price)
        arrive, active = users["arrive"][u], max(users["active"][u], 1.0)
        history: list[int] = []
        for k, t in enumerate(times):
            item, anchor = -1, -1
            # -- complement step: follow a recent item's complements
            if coins[k, 0] < p_comp and history:
                options = []
                for back, a in enumerate(history[-1:-len(recency) - 1:-1]):
                    comp = complements[a]
                    if comp.size:
                        comp = comp[~seen[comp] & (release[comp] <= t)]
                        if comp.size:
                            options.append((back, a, comp))
                if options:
                    back, anchor, comp = options[_pick(recency[[o[0] for o in options]], coins[k, 1])]
                    w = (base[comp] * (1.0 + loyalty * bought_brand[brand_of[comp]])
                         * np.where(compatible[comp] == anchor, _MADE_FOR_PICK_BONUS, 1.0))
                    item = int(comp[_pick(w, coins[k, 3])])
            # -- taste step: a category from the drifting taste, then an item in it
            if item < 0:
                anchor = -1
                f = min((t - arrive) / active, 1.0)
                is_open = launch <= t
                p = ((1.0 - drift * f) * t0 + drift * f * t1) * is_open
                u_cat = coins[k, 2]
                while True:
                    if p.sum() <= 0:  # the taste is all on closed or exhausted categories:
                        p = is_open.astype(float)  # fall back to any open one
                        if p.sum() <= 0:
                            break
                    c = _pick(p, u_cat)
                    items = cat_items[c]
                    ok = ~seen[items] & (cat_release[c] <= t)
                    if ok.any():
                        w = base[items] * ok * (1.0 + loyalty * bought_brand[cat_brand[c]])
                        item = int(items[_pick(w, coins[k, 3])])
                        break
                    p[c] = 0.0  # nothing left in c: close it for this step and draw again
                    is_open[c] = False
                    u_cat = rng.random()
                if item < 0:  # the user has seen every available item: the history ends here
                    break
            seen[item] = True
            bought_brand[brand_of[item]] = True
            history.append(item)
            out_comp.append(anchor >= 0)
            out_anchor.append(anchor)
        m = len(history)
        out_user.append(np.full(m, u, dtype=np.int64))
        out_item.append(np.array(history, dtype=np.int64))
        out_time.append(times[:m])
        out_session.append(sessions[:m] - sessions[0])
        seen[history] = False
        bought_brand[:] = False

    return {"user": np.concatenate(out_user), "item": np.concatenate(out_item),
            "timestamp": np.concatenate(out_time), "complement": np.array(out_comp, dtype=bool),
            "anchor": np.array(out_anchor, dtype=np.int64), "session": np.concatenate(out_session)}


def _mean_taste(start: pd.DataFrame, end: pd.DataFrame, drift: float) -> pd.DataFrame:
    """Time-averaged taste: the mean of ``(1 - drift f) start + drift f end`` over f in [0, 1]."""
    return (1.0 - drift / 2) * start + (drift / 2) * end


def _quantise(values: np.ndarray, fmt: str) -> np.ndarray:
    """Round floats to what ``fmt`` writes, through text, so saving and loading is exact."""
    return np.char.mod(fmt, values).astype(float)


# --------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------


def _gzip_bytes(data: bytes, name: str) -> bytes:
    """gzip data reproducibly: fixed name and mtime=0 in the header, level 9."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename=name, mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return buf.getvalue()


def _csv_bytes(df: pd.DataFrame, float_format: str | None = None) -> bytes:
    return df.to_csv(index=False, lineterminator="\n", float_format=float_format).encode("utf-8")


_sha256 = sha256_file


def save_shop(ds: Dataset, folder: str | Path) -> None:
    """Write a shop to ``folder`` byte-reproducibly, with a ``SHA256SUMS`` file.

    Files: ``interactions.csv.gz`` (user_id, item_id, timestamp), ``items.csv.gz``,
    ``users.csv.gz`` (observable), and the ground truth: ``truth.json`` (small
    structures), ``truth_items.csv.gz``, ``truth_users.csv.gz``, ``truth_events.csv.gz``.
    The same dataset always gives the same bytes (gzip header without a time stamp, fixed
    float formats).

    Raises:
        ValueError: ``ds`` lacks the shop's ground truth (it was not made by generate_shop).
    """
    truth = ds.truth
    missing = [k for k in ("params", "user_taste_start", "events", "complements") if k not in truth]
    if missing or ds.users is None:
        raise ValueError(f"save_shop writes shops from generate_shop(); this dataset lacks {missing or ['users']}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    categories = truth["categories"]

    start = truth["user_taste_start"].set_axis([f"start {c}" for c in categories], axis=1)
    end = truth["user_taste_end"].set_axis([f"end {c}" for c in categories], axis=1)
    truth_users = pd.concat([truth["user_segment"], truth["user_price_sensitivity"], truth["user_brand_loyalty"],
                             start, end], axis=1).reset_index()
    truth_items = pd.DataFrame({"item_id": ds.items["item_id"]})
    truth_items["popularity"] = np.char.mod("%.6e", truth["item_popularity"].reindex(truth_items["item_id"]).to_numpy())
    truth_items["compatible_with"] = (truth["compatible_with"].reindex(truth_items["item_id"]).fillna(0)
                                      .astype(np.int64).to_numpy())
    events = truth["events"][["reason", "anchor_item_id", "session"]]
    meta = {
        "format_version": FORMAT_VERSION,
        "generator": "course_lib.data.shop.generate_shop",
        "regenerate": f"{REGENERATE} --seed {truth['params']['seed']}",
        **{k: truth[k] for k in ("params", "categories", "type_category", "segments", "segment_share",
                                 "cold_category", "cold_category_launch", "window_start", "window_end")},
        "type_chain": [list(e) for e in truth["type_chain"]],
        "complements": {str(k): v for k, v in truth["complements"].items()},
    }
    files = {
        "interactions.csv.gz": _gzip_bytes(_csv_bytes(ds.interactions[["user_id", "item_id", "timestamp"]]),
                                           "interactions.csv"),
        "items.csv.gz": _gzip_bytes(_csv_bytes(ds.items, "%.2f"), "items.csv"),
        "users.csv.gz": _gzip_bytes(_csv_bytes(ds.users), "users.csv"),
        "truth.json": (json.dumps(meta, indent=1, ensure_ascii=False) + "\n").encode("utf-8"),
        "truth_items.csv.gz": _gzip_bytes(_csv_bytes(truth_items), "truth_items.csv"),
        "truth_users.csv.gz": _gzip_bytes(_csv_users(truth_users), "truth_users.csv"),
        "truth_events.csv.gz": _gzip_bytes(_csv_bytes(events), "truth_events.csv"),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    sums = "".join(f"{hashlib.sha256(files[name]).hexdigest()}  {name}\n" for name in sorted(files))
    (folder / "SHA256SUMS").write_text(sums, encoding="utf-8")


def _csv_users(df: pd.DataFrame) -> bytes:
    """truth_users as CSV: 4 decimals for the user parameters, 5 for the tastes."""
    out = df.copy()
    for col in ("price_sensitivity", "brand_loyalty"):
        out[col] = np.char.mod("%.4f", out[col].to_numpy())
    return _csv_bytes(out, "%.5f")


def _relative(path: Path) -> str:
    """path relative to the repository when inside it (no machine paths in notebook outputs)."""
    try:
        return path.resolve().relative_to(repo_root()).as_posix()
    except ValueError:
        return path.name


def verify_shop(folder: str | Path | None = None) -> None:
    """Check every file of a saved shop against its ``SHA256SUMS``.

    Raises:
        FileNotFoundError: the folder, ``SHA256SUMS`` or a data file is missing.
        ValueError: a file's SHA-256 differs from the recorded one (names the file).
    """
    folder = Path(folder) if folder is not None else datasets_dir() / "shop"
    fix = (f"restore the committed files with `git checkout datasets/shop`, or regenerate them with "
           f"`{REGENERATE}`")
    sums_path = folder / "SHA256SUMS"
    if not sums_path.is_file():
        raise FileNotFoundError(f"shop: no SHA256SUMS in {_relative(folder)}; {fix}")
    recorded = {}
    for line in sums_path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            recorded[name.lstrip("*")] = digest
    for name in SHOP_FILES:
        path = folder / name
        if name not in recorded:
            raise ValueError(f"shop: SHA256SUMS in {_relative(folder)} does not list {name}; {fix}")
        if not path.is_file():
            raise FileNotFoundError(f"shop: {name} is missing from {_relative(folder)}; {fix}")
        actual = _sha256(path)
        if actual != recorded[name]:
            raise ValueError(f"shop: {name} in {_relative(folder)} does not match SHA256SUMS (sha256 {actual[:12]}... "
                             f"instead of {recorded[name][:12]}...): the file was changed or damaged; {fix}")


def load_shop(folder: str | Path | None = None, verify: bool = True) -> Dataset:
    """Read a saved shop (by default the committed ``datasets/shop``) into a :class:`Dataset`.

    Args:
        folder: where :func:`save_shop` wrote the files (default ``datasets/shop``).
        verify: check every file against ``SHA256SUMS`` first (see :func:`verify_shop`).

    Returns:
        The Dataset "shop" with ``interactions``, ``items``, ``users`` and ``truth``
        exactly as :func:`generate_shop` returned them.
    """
    folder = Path(folder) if folder is not None else datasets_dir() / "shop"
    if verify:
        verify_shop(folder)
    meta = json.loads((folder / "truth.json").read_text(encoding="utf-8"))
    categories = meta["categories"]

    def read(name: str, **kw: Any) -> pd.DataFrame:
        # pandas parses floats exactly as Python's float() does (the round trip the
        # generator's _quantise relies on; test_shop checks it)
        return pd.read_csv(folder / name, **kw)

    interactions = read("interactions.csv.gz", dtype={"user_id": np.int64, "item_id": np.int64,
                                                      "timestamp": np.int64})
    items = read("items.csv.gz", dtype={"item_id": np.int64, "release_timestamp": np.int64, "price": float},
                 keep_default_na=False)
    users = read("users.csv.gz", dtype=np.int64)
    t_items = read("truth_items.csv.gz", index_col="item_id")
    t_users = read("truth_users.csv.gz", index_col="user_id")
    t_events = read("truth_events.csv.gz", dtype={"anchor_item_id": np.int64, "session": np.int64})

    start = t_users[[f"start {c}" for c in categories]].set_axis(categories, axis=1)
    end = t_users[[f"end {c}" for c in categories]].set_axis(categories, axis=1)
    compat = t_items["compatible_with"]
    compat = compat[compat > 0].astype(np.int64)
    truth: dict[str, Any] = {
        "params": meta["params"],
        "categories": categories,
        "type_category": meta["type_category"],
        "type_chain": [tuple(e) for e in meta["type_chain"]],
        "segments": meta["segments"],
        "segment_share": meta["segment_share"],
        "cold_category": meta["cold_category"],
        "cold_category_launch": meta["cold_category_launch"],
        "window_start": meta["window_start"],
        "window_end": meta["window_end"],
        "item_popularity": t_items["popularity"].astype(float),
        "compatible_with": compat,
        "complements": {int(k): v for k, v in meta["complements"].items()},
        "user_segment": t_users["segment"].astype("str"),
        "user_taste_start": start,
        "user_taste_end": end,
        "user_taste": _mean_taste(start, end, meta["params"]["drift"]),
        "user_price_sensitivity": t_users["price_sensitivity"],
        "user_brand_loyalty": t_users["brand_loyalty"],
        "events": pd.concat([interactions, t_events], axis=1),
    }
    files = ", ".join(SHOP_FILES[:3])
    return Dataset(name="shop", interactions=interactions, items=items, users=users, truth=truth,
                   source=f"synthetic, generate_shop(seed={meta['params']['seed']}); {files} in {_relative(folder)}")


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m course_lib.data.shop --out datasets/shop [--seed 2024]``."""
    parser = argparse.ArgumentParser(prog="python -m course_lib.data.shop",
                                     description="Generate the synthetic shop and save it reproducibly.")
    parser.add_argument("--out", default=None, help="output folder (default: datasets/shop in the repository)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--n-users", type=int, default=6000)
    parser.add_argument("--n-items", type=int, default=3000)
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else datasets_dir() / "shop"
    began = time.perf_counter()
    try:
        ds = generate_shop(seed=args.seed, n_users=args.n_users, n_items=args.n_items)
    except ValueError as err:
        parser.error(str(err))
    took = time.perf_counter() - began
    save_shop(ds, out)
    print(f"generated in {took:.1f} s; wrote {out}")
    for key, value in ds.stats().items():
        print(f"  {key:24s} {value:,.2f}" if isinstance(value, float) else f"  {key:24s} {value}")
    for name in (*SHOP_FILES, "SHA256SUMS"):
        print(f"  {name:24s} {(out / name).stat().st_size / 1024:8.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
