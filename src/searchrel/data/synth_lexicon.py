"""The multilingual vocabulary of the synthetic world: topics, attributes and text templates per language.

Every word entry is written ``"en | es | de | fr | ja"``; within a language ``;`` separates synonyms and the
first one is canonical. Item text uses canonical words, queries and board titles also use the synonyms, so
the search log carries phrasings that the item text lacks. Image captions are always English (a VLM's).
"""

from __future__ import annotations

from dataclasses import dataclass

LANGUAGES = ("en", "es", "de", "fr", "ja")
COUNTRIES = {"en": ("US", "GB"), "es": ("ES", "MX"), "de": ("DE",), "fr": ("FR",), "ja": ("JP",)}

Words = dict[str, tuple[str, ...]]  # language -> synonyms, canonical first


def words(entry: str) -> Words:
    """Parse ``"pasta;noodles | pasta | Nudeln | pâtes | パスタ"`` into language -> synonyms."""
    parts = [p.strip() for p in entry.split("|")]
    if len(parts) != len(LANGUAGES):
        raise ValueError(f"lexicon entry needs {len(LANGUAGES)} languages: {entry!r}")
    return {lang: tuple(w.strip() for w in part.split(";")) for lang, part in zip(LANGUAGES, parts)}


# --- attributes -------------------------------------------------------------------------------------
# Kinds in a fixed order: the synthetic world stores an item's attributes as one code per kind.
KINDS = ("colour", "material", "style", "audience", "season")

ATTRIBUTES: dict[str, dict[str, Words]] = {
    "colour": {
        "red": words("red | rojo | rot | rouge | 赤"),
        "blue": words("blue;navy | azul | blau | bleu | 青;ブルー"),
        "green": words("green;sage green | verde | grün | vert | 緑;グリーン"),
        "white": words("white | blanco | weiß | blanc | 白;ホワイト"),
        "black": words("black | negro | schwarz | noir | 黒;ブラック"),
        "pink": words("pink;blush | rosa | rosa | rose | ピンク"),
        "yellow": words("yellow;mustard | amarillo | gelb | jaune | 黄色;イエロー"),
        "beige": words("beige;cream | beige | beige | beige | ベージュ"),
    },
    "material": {
        "wood": words("wooden;wood | madera | Holz | bois | 木製;木"),
        "linen": words("linen | lino | Leinen | lin | リネン"),
        "cotton": words("cotton | algodón | Baumwolle | coton | コットン;綿"),
        "ceramic": words("ceramic | cerámica | Keramik | céramique | 陶器"),
        "metal": words("metal;brass | metal | Metall | métal | 金属;メタル"),
        "leather": words("leather | cuero;piel | Leder | cuir | レザー;革"),
        "wool": words("wool | lana | Wolle | laine | ウール"),
    },
    "style": {
        "boho": words("boho;bohemian | boho;bohemio | Boho | bohème;boho | ボヘミアン;ボーホー"),
        "minimalist": words("minimalist;minimal | minimalista | minimalistisch | minimaliste | ミニマル;シンプル"),
        "rustic": words("rustic;farmhouse | rústico | rustikal;Landhaus | rustique | ラスティック;カントリー"),
        "modern": words("modern;contemporary | moderno | modern | moderne | モダン"),
        "vintage": words("vintage;retro | vintage;retro | Vintage;Retro | vintage;rétro | ヴィンテージ;レトロ"),
        "cozy": words("cozy;hygge | acogedor | gemütlich;hyggelig | cosy;cocooning | ほっこり;北欧"),
        "elegant": words("elegant;chic | elegante | elegant;schick | élégant;chic | エレガント;上品"),
    },
    "audience": {
        "kids": words("kids;children;toddler | niños | Kinder | enfants | 子供;キッズ"),
        "teens": words("teens;teenagers | adolescentes | Teenager;Jugendliche | ados | ティーン;10代"),
        "women": words("women;her;mom | mujer;mamá | Damen;Frauen;Mama | femme;maman | レディース;女性;母"),
        "men": words("men;dad;him | hombre;papá | Herren;Männer;Papa | homme;papa | メンズ;男性;父"),
        "family": words("family | familia | Familie | famille | 家族;ファミリー"),
    },
    "season": {
        "spring": words("spring | primavera | Frühling | printemps | 春"),
        "summer": words("summer | verano | Sommer | été | 夏"),
        "autumn": words("fall;autumn | otoño | Herbst | automne | 秋"),
        "winter": words("winter | invierno | Winter | hiver | 冬"),
        "christmas": words("christmas;xmas;holiday | navidad | Weihnachten | noël | クリスマス"),
        "halloween": words("halloween | halloween | Halloween | halloween | ハロウィン"),
    },
}


# --- verticals and sub-topics ---------------------------------------------------------------------

@dataclass(frozen=True)
class Vertical:
    """A Pinterest-like vertical: its own words, sub-topics, which attribute kinds apply, photo scenes."""

    words: Words
    topics: dict[str, Words]
    kinds: tuple[str, ...]
    scenes: tuple[str, ...]  # English, for the image caption


VERTICALS: dict[str, Vertical] = {
    "recipes": Vertical(
        words("recipes;food;dinner ideas | recetas;comida | Rezepte;Essen | recettes;cuisine | レシピ;料理"),
        {"pasta": words("pasta;spaghetti;noodles | pasta;espaguetis | Pasta;Nudeln | pâtes;spaghetti | パスタ;スパゲッティ"),
         "cake": words("cake;birthday cake | tarta;pastel | Kuchen;Torte | gâteau | ケーキ"),
         "salad": words("salad;salad bowl | ensalada | Salat | salade | サラダ"),
         "soup": words("soup;stew | sopa;caldo | Suppe;Eintopf | soupe;velouté | スープ"),
         "cookies": words("cookies;biscuits | galletas | Kekse;Plätzchen | biscuits;cookies | クッキー")},
        ("audience", "season"),
        ("on a kitchen counter", "served on a plate", "in a bowl on a table", "seen from above")),
    "home_decor": Vertical(
        words("home decor;interior;home | decoración;hogar | Wohnideen;Einrichtung | déco;intérieur | インテリア;部屋"),
        {"sofa": words("sofa;couch | sofá | Sofa;Couch | canapé | ソファ"),
         "dining_table": words("dining table;kitchen table | mesa de comedor | Esstisch | table à manger | ダイニングテーブル"),
         "bedding": words("bedding;duvet cover;bed linen | ropa de cama | Bettwäsche | linge de lit | 寝具;布団カバー"),
         "wall_art": words("wall art;poster;prints | cuadros;láminas | Wandbilder;Poster | affiches;tableaux | ウォールアート;ポスター"),
         "lamp": words("lamp;lighting;pendant light | lámpara | Lampe;Leuchte | lampe;luminaire | ランプ;照明")},
        ("colour", "material", "style", "season"),
        ("in a bright living room", "in a sunlit room", "against a plain wall", "next to a window")),
    "fashion": Vertical(
        words("outfits;fashion;style | moda;outfits | Mode;Outfits | mode;tenues | ファッション;コーデ"),
        {"dress": words("dress;maxi dress | vestido | Kleid | robe | ワンピース;ドレス"),
         "sneakers": words("sneakers;trainers | zapatillas | Sneaker;Turnschuhe | baskets | スニーカー"),
         "jacket": words("jacket;coat | chaqueta;abrigo | Jacke;Mantel | veste;manteau | ジャケット;コート"),
         "handbag": words("handbag;purse;tote bag | bolso | Handtasche | sac à main | ハンドバッグ;バッグ"),
         "earrings": words("earrings;jewelry | pendientes;aretes | Ohrringe;Schmuck | boucles d'oreilles;bijoux | ピアス;イヤリング")},
        ("colour", "material", "style", "audience", "season"),
        ("worn by a model", "on a hanger", "laid flat on a bed", "in a street style shot")),
    "travel": Vertical(
        words("travel;trips;vacation | viajes;vacaciones | Reisen;Urlaub | voyage;vacances | 旅行;旅"),
        {"beach": words("beach holiday;beach;island | playa | Strandurlaub;Strand | plage | ビーチ;海"),
         "city_break": words("city break;city trip;weekend getaway | escapada urbana | Städtereise | week-end en ville;city trip | 街歩き;都市旅行"),
         "hiking": words("hiking;hiking trails;trek | senderismo;rutas | Wandern;Wanderwege | randonnée | ハイキング;登山"),
         "road_trip": words("road trip | viaje en coche;road trip | Roadtrip | road trip;voyage en voiture | ドライブ旅行"),
         "ski": words("ski trip;skiing;ski resort | esquí | Skiurlaub;Skifahren | ski;station de ski | スキー")},
        ("audience", "season"),
        ("with mountains in the background", "at sunset", "with people walking", "under a clear sky")),
    "diy": Vertical(
        words("diy;crafts;diy projects | manualidades;diy | DIY;Basteln | diy;loisirs créatifs | DIY;ハンドメイド"),
        {"knitting": words("knitting;knitting pattern | tejido;punto | Stricken;Strickmuster | tricot | 編み物"),
         "candles": words("candle making;candles | velas | Kerzen;Kerzen gießen | bougies | キャンドル"),
         "shelf": words("wall shelf;shelf;shelves | estante;repisa | Wandregal;Regal | étagère | 棚;ウォールシェルフ"),
         "macrame": words("macrame;wall hanging | macramé | Makramee | macramé | マクラメ"),
         "cards": words("greeting cards;handmade cards | tarjetas | Grußkarten;Karten | cartes | グリーティングカード;カード")},
        ("colour", "material", "audience", "season"),
        ("on a craft table", "with tools around it", "held in two hands", "on a workbench")),
    "beauty": Vertical(
        words("beauty;makeup ideas | belleza | Beauty;Schönheit | beauté | 美容;コスメ"),
        {"nails": words("nail art;nails;manicure | uñas;manicura | Nageldesign;Nägel | ongles;nail art | ネイル;ネイルアート"),
         "hairstyle": words("hairstyles;hair;braids | peinados | Frisuren | coiffures | ヘアアレンジ;髪型"),
         "makeup": words("makeup look;makeup | maquillaje | Make-up;Schminke | maquillage | メイク"),
         "skincare": words("skincare routine;skincare | cuidado de la piel;skincare | Hautpflege | soin de la peau;skincare | スキンケア"),
         "perfume": words("perfume;fragrance | perfume | Parfüm;Duft | parfum | 香水")},
        ("colour", "style", "audience", "season"),
        ("in a close-up shot", "on a marble surface", "in soft light", "on a vanity table")),
}


# --- how words combine into a phrase, per language ---------------------------------------------------
# (slot, prefix, suffix) in reading order; "topic" is the sub-topic (or vertical) word.
PHRASE_ORDER: dict[str, tuple[tuple[str, str, str], ...]] = {
    "en": (("season", "", ""), ("style", "", ""), ("colour", "", ""), ("material", "", ""), ("topic", "", ""),
           ("audience", "for ", "")),
    "es": (("topic", "", ""), ("colour", "", ""), ("style", "", ""), ("material", "de ", ""), ("season", "de ", ""),
           ("audience", "para ", "")),
    "de": (("season", "", ""), ("style", "", ""), ("colour", "", ""), ("topic", "", ""), ("material", "aus ", ""),
           ("audience", "für ", "")),
    "fr": (("topic", "", ""), ("colour", "", ""), ("style", "", ""), ("material", "en ", ""), ("season", "", ""),
           ("audience", "pour ", "")),
    "ja": (("season", "", "の"), ("audience", "", "向け"), ("style", "", ""), ("colour", "", ""), ("material", "", ""),
           ("topic", "", "")),
}
JOINER = {"en": " ", "es": " ", "de": " ", "fr": " ", "ja": ""}  # Japanese writes no spaces between words


# --- item text ------------------------------------------------------------------------------------
TITLE_TEMPLATES = {
    "en": ("{x}", "{x} ideas", "Easy {x}", "The perfect {x}", "{x} inspiration"),
    "es": ("{x}", "Ideas: {x}", "{x} | inspiración", "{x} ✨"),
    "de": ("{x}", "{x} Ideen", "{x} – Inspiration", "{x} ✨"),
    "fr": ("{x}", "Idées {x}", "{x} | inspiration", "{x} ✨"),
    "ja": ("{x}", "{x}のアイデア", "おしゃれな{x}", "{x}✨"),
}
FILLERS = {
    "en": ("Saved from my favourite blog.", "So easy to make!", "Shop the look below.", "Step by step guide inside.",
           "Perfect for any occasion."),
    "es": ("¡Muy fácil!", "Guía paso a paso.", "Ideal para cualquier ocasión.", "Guardado de mi blog favorito."),
    "de": ("Ganz einfach!", "Schritt für Schritt erklärt.", "Perfekt für jeden Anlass.", "Aus meinem Lieblingsblog."),
    "fr": ("Trop facile !", "Tuto pas à pas.", "Parfait pour toutes les occasions.", "Vu sur mon blog préféré."),
    "ja": ("とても簡単！", "作り方を詳しく紹介。", "どんなシーンにもぴったり。", "お気に入りのブログから保存。"),
}
# Thin pins: the title says nothing about the content; only the image (caption) does.
THIN_TITLES = {
    "en": ("New idea ✨", "Love this!", "Obsessed 😍", "Must try", "Saving this for later", "Goals", "Yes please"),
    "es": ("¡Me encanta!", "Nueva idea ✨", "Quiero esto", "Para probar"),
    "de": ("Neue Idee ✨", "Toll!", "Muss ich ausprobieren", "Merken"),
    "fr": ("Nouvelle idée ✨", "J'adore !", "À tester", "Trop beau"),
    "ja": ("新しいアイデア✨", "かわいい！", "保存用", "やってみたい"),
}
CAPTION_TEMPLATES = ("A photo of {x} {scene}.", "An image showing {x} {scene}.", "Close-up of {x} {scene}.")
CAPTION_SEASON = {"christmas": "with christmas decorations", "halloween": "with pumpkins around it",
                  "winter": "with snow outside", "summer": "in bright summer light"}
BRANDS = ("Nordlys", "Casa Luna", "Mori & Co", "Atelier Sève", "Kirsche", "Sol y Sombra", "Hanami", "Oakline",
          "Velvet Fox", "Petit Nid")
BRANDED_VERTICALS = ("home_decor", "fashion", "diy", "beauty")


# --- board titles: informal, in the saver's language -----------------------------------------------
# Slots: {topic} sub-topic or vertical word, {style}, {audience}, {season}. Kind "topic" has only {topic}.
BOARD_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {"style": ("{style} {topic} inspo", "{style} vibes ✨", "{topic} - {style}"),
           "audience": ("gifts for {audience}", "{topic} for {audience}", "for {audience} 💕"),
           "season": ("{season} {topic}", "{season} ideas!!", "{season} mood"),
           "season_audience": ("{season} gifts for {audience}", "{season} {topic} for {audience}"),
           "topic": ("{topic}", "{topic} ideas", "my {topic} board", "dream {topic}"),
           "generic": ("things i love", "ideas", "my pins", "😍😍")},
    "es": {"style": ("inspo {style}", "{topic} estilo {style}"),
           "audience": ("regalos para {audience}", "{topic} para {audience}"),
           "season": ("{topic} de {season}", "ideas {season}"),
           "season_audience": ("regalos {season} para {audience}",),
           "topic": ("{topic}", "ideas {topic}", "mis {topic}"),
           "generic": ("cosas bonitas", "ideas", "me encanta")},
    "de": {"style": ("{style} {topic} Inspo", "{style} Ideen"),
           "audience": ("Geschenke für {audience}", "{topic} für {audience}"),
           "season": ("{season} {topic}", "{season} Ideen"),
           "season_audience": ("{season} Geschenke für {audience}",),
           "topic": ("{topic}", "{topic} Ideen", "Traum {topic}"),
           "generic": ("Schöne Dinge", "Ideen", "Merken")},
    "fr": {"style": ("inspi {style}", "{topic} style {style}"),
           "audience": ("cadeaux pour {audience}", "{topic} pour {audience}"),
           "season": ("{topic} {season}", "idées {season}"),
           "season_audience": ("cadeaux {season} pour {audience}",),
           "topic": ("{topic}", "idées {topic}", "mes {topic}"),
           "generic": ("mes envies", "idées", "j'adore")},
    "ja": {"style": ("{style}な{topic}", "{style}系"),
           "audience": ("{audience}へのプレゼント", "{audience}向け{topic}"),
           "season": ("{season}の{topic}", "{season}アイデア"),
           "season_audience": ("{audience}への{season}プレゼント",),
           "topic": ("{topic}", "{topic}まとめ", "いつか{topic}"),
           "generic": ("お気に入り", "アイデア", "いつかやりたい")},
}
