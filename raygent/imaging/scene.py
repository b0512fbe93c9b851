"""A scene description (English or Chinese) -> a structured `Scene` by keyword matching.

"a little fox and an owl in a moonlit forest by a river" and "小狐狸和猫头鹰在月光下的森林里"
both give setting=forest, time_of_day=night, characters=[fox, owl], objects=[moon, (river)].
Matching is longest-first and each matched span is masked, so 猫头鹰 (owl) is not also read as
猫 (cat), 机器人 (robot) not as 人 (person), and 白天 (daytime) not as the colour 白. A colour or
a number just before a character ("a red fox", "两只小猫", "three robots") belongs to it.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

Category = Literal["animal", "person", "robot"]


class SceneCharacter(BaseModel):
    kind: str  # fox, owl, cat, ..., girl, boy, robot
    category: Category
    colour: str | None = None  # a colour name from COLOURS, when the description gave one
    count: int = Field(1, ge=1, le=6)
    size: float = 1.0  # 0.8 for "little" / 小, 1.25 for "big" / 大


class Scene(BaseModel):
    setting: str = "meadow"
    time_of_day: str = "day"  # day, night, sunset, dawn
    weather: str = "clear"  # clear, cloudy, rain, snow, fog, storm
    characters: list[SceneCharacter] = []
    objects: list[str] = []
    keywords: list[str] = []  # the words that were understood, in order of appearance

    def summary(self) -> str:
        who = ", ".join(f"{c.count} {c.colour + ' ' if c.colour else ''}{c.kind}" for c in self.characters) or "nobody"
        return (f"{self.setting} at {self.time_of_day}, {self.weather}; characters: {who}; "
                f"objects: {', '.join(self.objects) or 'none'}")


SETTINGS = ("forest", "sea", "city", "mountain", "house", "room", "space", "garden", "meadow", "desert",
            "village", "underwater")
TIMES = ("day", "night", "sunset", "dawn")
WEATHERS = ("clear", "cloudy", "rain", "snow", "fog", "storm")
OBJECTS = ("tree", "river", "lake", "castle", "house", "boat", "moon", "star", "sun", "flower", "bridge", "rainbow",
           "mushroom", "lantern", "campfire", "tent", "balloon", "kite", "rocket", "planet", "cloud", "cactus")

#: colour name -> RGB
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 48, 49), "orange": (240, 130, 30), "yellow": (250, 210, 50), "green": (70, 170, 70),
    "blue": (50, 110, 220), "purple": (140, 70, 190), "pink": (245, 140, 180), "white": (245, 245, 245),
    "black": (40, 40, 45), "grey": (140, 140, 145), "brown": (130, 85, 50), "gold": (230, 180, 40),
    "silver": (190, 195, 205),
}

# kind -> (category, English patterns (regex, word-bounded), Chinese words)
_CHARACTERS: dict[str, tuple[Category, str, tuple[str, ...]]] = {
    "fox": ("animal", r"fox(?:es)?|vixen", ("狐狸", "狐")),
    "owl": ("animal", r"owls?|owlets?", ("猫头鹰",)),
    "cat": ("animal", r"cats?|kittens?|kitty|kitties", ("小猫", "猫咪", "猫")),
    "dog": ("animal", r"dogs?|pupp(?:y|ies)|doggy", ("小狗", "狗")),
    "rabbit": ("animal", r"rabbits?|bunn(?:y|ies)|hares?", ("兔子", "兔")),
    "panda": ("animal", r"pandas?", ("熊猫",)),
    "bear": ("animal", r"bears?|teddy", ("熊",)),
    "bird": ("animal", r"birds?|sparrows?|robins?|swallows?", ("小鸟", "鸟", "麻雀", "燕子")),
    "duck": ("animal", r"ducks?|ducklings?", ("鸭子", "小鸭", "鸭")),
    "fish": ("animal", r"fish(?:es)?|goldfish", ("金鱼", "鱼")),
    "squirrel": ("animal", r"squirrels?", ("松鼠",)),
    "mouse": ("animal", r"mouse|mice", ("老鼠", "小鼠", "鼠")),
    "deer": ("animal", r"deer|fawns?|reindeer", ("小鹿", "鹿")),
    "frog": ("animal", r"frogs?|toads?", ("青蛙", "蛙")),
    "turtle": ("animal", r"turtles?|tortoises?", ("乌龟", "海龟", "龟")),
    "lion": ("animal", r"lions?", ("狮子",)),
    "tiger": ("animal", r"tigers?", ("老虎", "虎")),
    "pig": ("animal", r"pigs?|piglets?", ("小猪", "猪")),
    "horse": ("animal", r"horses?|ponies|pony", ("小马", "骏马", "马儿", "马")),
    "elephant": ("animal", r"elephants?", ("大象", "象")),
    "dragon": ("animal", r"dragons?", ("龙",)),
    "butterfly": ("animal", r"butterfl(?:y|ies)", ("蝴蝶",)),
    "robot": ("robot", r"robots?|androids?", ("机器人",)),
    "princess": ("person", r"princess(?:es)?", ("公主",)),
    "king": ("person", r"kings?|queens?", ("国王", "王后", "女王")),
    "girl": ("person", r"girls?", ("小女孩", "女孩", "姑娘", "妹妹", "姐姐")),
    "boy": ("person", r"boys?", ("小男孩", "男孩", "哥哥", "弟弟")),
    "woman": ("person", r"wom[ae]n|lady|ladies|mother|mom|mum|grandma|grandmother",
              ("女人", "妈妈", "母亲", "奶奶", "外婆")),
    "man": ("person", r"man|men|father|dad|grandpa|grandfather|fisherman|farmer",
            ("男人", "爸爸", "父亲", "爷爷", "外公", "渔夫", "农夫")),
    "child": ("person", r"child(?:ren)?|kids?|baby|babies", ("孩子", "小孩", "儿童", "宝宝")),
    "person": ("person", r"persons?|people|traveller|traveler|hikers?|wizards?", ("旅人", "巫师", "人")),
}

# (English regex, Chinese words) -> list of facts ("setting:forest", "time:night", "object:moon", ...)
_FACTS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    (r"moonlit|moonlight|moonlighted", ("月光", "月夜"), ("time:night", "object:moon")),
    (r"starry|starlit", ("星空", "星夜", "满天星"), ("time:night", "object:star")),
    (r"under ?water|under the sea|sea ?bed|ocean floor", ("海底", "水下", "水底"), ("setting:underwater",)),
    (r"forests?|woods|woodlands?|jungles?|groves?|bamboo", ("森林", "树林", "丛林", "竹林", "林中", "林子"),
     ("setting:forest",)),
    (r"seas?|oceans?|beach(?:es)?|seaside|shores?|coast", ("大海", "海边", "海洋", "海滩", "沙滩", "海上", "海"),
     ("setting:sea",)),
    (r"cit(?:y|ies)|towns?|streets?|downtown|skyscrapers?", ("城市", "城里", "街道", "小镇", "街上", "高楼"),
     ("setting:city",)),
    (r"mountains?|peaks?|cliffs?", ("高山", "山上", "山顶", "山峰", "大山", "山"), ("setting:mountain",)),
    (r"rooms?|bedroom|indoors?|inside|kitchen", ("房间", "屋里", "卧室", "室内", "家里"), ("setting:room",)),
    (r"outer space|space|galax(?:y|ies)|universe|cosmos", ("太空", "宇宙", "银河", "外星"), ("setting:space",)),
    (r"gardens?|parks?|yards?|backyard", ("花园", "公园", "院子", "庭院"), ("setting:garden",)),
    (r"meadows?|fields?|grasslands?|prairies?|farms?|hills?|countryside", ("草地", "草原", "田野", "农场", "山坡",
                                                                          "乡下", "草坪"), ("setting:meadow",)),
    (r"deserts?|dunes?", ("沙漠",), ("setting:desert",)),
    (r"villages?", ("村庄", "村子", "村里", "乡村"), ("setting:village",)),
    (r"nights?|midnight|night-?time|dark", ("夜晚", "晚上", "夜里", "深夜", "黑夜", "半夜", "夜"), ("time:night",)),
    (r"sunsets?|dusk|evening|twilight|sundown", ("黄昏", "日落", "夕阳", "傍晚", "晚霞"), ("time:sunset",)),
    (r"dawn|sunrise|daybreak", ("日出", "黎明", "朝霞", "清晨"), ("time:dawn",)),
    (r"daytime|day|morning|noon|afternoon", ("白天", "早上", "上午", "中午", "下午", "早晨"), ("time:day",)),
    (r"sunny|sunshine|sunlit", ("阳光", "晴天", "晴朗"), ("time:day", "weather:clear", "object:sun")),
    (r"thunder(?:storm)?|storms?|stormy|lightning", ("暴风雨", "雷雨", "打雷", "闪电", "风暴"), ("weather:storm",)),
    (r"rain(?:s|y|ing)?|drizzle", ("下雨", "雨天", "雨"), ("weather:rain",)),
    (r"snow(?:s|y|ing)?|winter|snowflakes?", ("下雪", "雪地", "雪花", "冬天", "雪"), ("weather:snow",)),
    (r"fog(?:gy)?|mist(?:y)?|haze", ("雾", "薄雾"), ("weather:fog",)),
    (r"cloudy|overcast|grey sky|gray sky", ("阴天", "多云", "乌云"), ("weather:cloudy",)),
    (r"clouds?", ("白云", "云朵", "云"), ("object:cloud",)),
    (r"trees?|pines?|oaks?", ("大树", "树木", "松树", "树"), ("object:tree",)),
    (r"rivers?|streams?|creeks?|brooks?", ("小河", "河边", "河流", "小溪", "溪流", "河", "溪"), ("object:river",)),
    (r"lakes?|ponds?", ("湖边", "湖泊", "池塘", "湖"), ("object:lake",)),
    (r"castles?|palaces?", ("城堡", "宫殿"), ("object:castle",)),
    (r"houses?|cottages?|huts?|cabins?|homes?", ("房子", "小屋", "木屋", "房屋", "家"), ("object:house",)),
    (r"boats?|ships?|sailboats?|canoes?", ("小船", "帆船", "船"), ("object:boat",)),
    (r"moons?", ("月亮", "月"), ("object:moon",)),
    (r"stars?", ("星星", "星"), ("object:star",)),
    (r"suns?", ("太阳",), ("object:sun",)),
    (r"flowers?|blossoms?|roses?|tulips?|daisies", ("花朵", "鲜花", "花儿", "花"), ("object:flower",)),
    (r"bridges?", ("小桥", "桥"), ("object:bridge",)),
    (r"rainbows?", ("彩虹",), ("object:rainbow",)),
    (r"mushrooms?", ("蘑菇",), ("object:mushroom",)),
    (r"lanterns?|lamps?", ("灯笼", "灯"), ("object:lantern",)),
    (r"campfires?|bonfires?|fire", ("篝火", "火堆"), ("object:campfire",)),
    (r"tents?|camping", ("帐篷", "露营"), ("object:tent",)),
    (r"balloons?", ("气球",), ("object:balloon",)),
    (r"kites?", ("风筝",), ("object:kite",)),
    (r"rockets?|spaceships?", ("火箭", "飞船"), ("object:rocket",)),
    (r"planets?", ("星球", "行星"), ("object:planet",)),
    (r"cact(?:us|i)", ("仙人掌",), ("object:cactus",)),
]

_EN_COLOURS = {"red": "red", "orange": "orange", "yellow": "yellow", "green": "green", "blue": "blue",
               "purple": "purple", "violet": "purple", "pink": "pink", "white": "white", "black": "black",
               "grey": "grey", "gray": "grey", "brown": "brown", "golden": "gold", "gold": "gold",
               "silver": "silver", "ginger": "orange", "snowy": "white"}
_ZH_COLOURS = {"红": "red", "橙": "orange", "橘": "orange", "黄": "yellow", "绿": "green", "蓝": "blue",
               "紫": "purple", "粉": "pink", "白": "white", "黑": "black", "灰": "grey", "棕": "brown",
               "褐": "brown", "金": "gold", "银": "silver"}
_EN_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "pair": 2, "couple": 2, "three": 3, "four": 4, "five": 5,
               "six": 6, "several": 3, "many": 4, "some": 3, "few": 3}
_ZH_NUMBERS = {"一": 1, "两": 2, "二": 2, "俩": 2, "三": 3, "四": 4, "五": 5, "六": 6, "几": 3, "群": 4, "些": 3}
_SMALL = {"little", "small", "tiny", "baby", "young", "小"}
_BIG = {"big", "giant", "huge", "large", "great", "大"}
_CJK = re.compile(r"[\u3400-\u9fff]")


def _patterns() -> list[tuple[str, bool, str, object]]:
    """(pattern, is_chinese, what, payload): what is 'char' (payload: the kind) or 'facts'."""
    items: list[tuple[str, bool, str, object]] = []
    for kind, (_, en, zh) in _CHARACTERS.items():
        items.append((en, False, "char", kind))
        items.extend((w, True, "char", kind) for w in zh)
    for en, zh, facts in _FACTS:
        items.append((en, False, "facts", facts))
        items.extend((w, True, "facts", facts) for w in zh)
    return items


_PATTERNS = _patterns()
_COMPILED = {p: re.compile(rf"\b(?:{p})\b") for p, zh, _, _ in _PATTERNS if not zh}


def _plural(word: str) -> bool:
    return word.endswith("s") and not word.endswith(("ss", "us")) or word in ("mice", "men", "women", "people",
                                                                                "children", "ponies", "puppies")


def parse_scene(text: str) -> Scene:
    """Read a scene description (English, Chinese or mixed) into a Scene."""
    lowered = " " + text.lower() + " "
    # every match of every pattern, then the longest ones first, skipping those that overlap a longer one
    candidates: list[tuple[int, int, str, object, str]] = []  # start, end, what, payload, matched text
    for pattern, zh, what, payload in _PATTERNS:
        finder = re.finditer(re.escape(pattern), lowered) if zh else _COMPILED[pattern].finditer(lowered)
        candidates.extend((m.start(), m.end(), what, payload, m.group(0)) for m in finder)
    taken = [False] * len(lowered)
    hits: list[tuple[int, int, str, object, str]] = []
    for start, end, what, payload, matched in sorted(candidates, key=lambda c: (c[0] - c[1], c[0])):
        if not any(taken[start:end]):
            hits.append((start, end, what, payload, matched))
            taken[start:end] = [True] * (end - start)
    hits.sort(key=lambda h: h[0])

    scene = Scene()
    settings: list[str] = []
    times: list[str] = []
    weathers: list[str] = []
    objects: list[str] = []
    characters: dict[str, SceneCharacter] = {}
    previous_end = 0
    for start, end, what, payload, matched in hits:
        scene.keywords.append(matched)
        if what == "facts":
            for fact in payload:  # type: ignore[attr-defined]
                key, value = fact.split(":")
                {"setting": settings, "time": times, "weather": weathers, "object": objects}[key].append(value)
        else:
            kind = str(payload)
            category = _CHARACTERS[kind][0]
            before = lowered[max(previous_end, start - 24):start]
            colour, count, size = _modifiers(before, matched)
            if kind in characters:  # "a fox ... the fox": one character, more only when asked for
                character = characters[kind]
                character.colour = character.colour or colour
                if count > 1:
                    character.count = min(6, max(character.count, count))
            else:
                characters[kind] = SceneCharacter(kind=kind, category=category, colour=colour, count=count, size=size)
        previous_end = end

    # "space" and "underwater" name where everything is; otherwise the first setting named wins, and a
    # house / castle / tree mentioned without a setting is put on a meadow / in a forest
    for special in ("space", "underwater", "room"):
        if special in settings:
            scene.setting = special
            break
    else:
        if settings:
            scene.setting = settings[0]
        elif "house" in objects or "castle" in objects:
            scene.setting = "meadow"
        elif "tree" in objects and any(k in ("trees", "pines", "oaks", "树木") for k in scene.keywords):
            scene.setting = "forest"
        elif "boat" in objects and "river" not in objects and "lake" not in objects:
            scene.setting = "sea"
    if times:
        # an explicit night/sunset/dawn beats a generic "day" word ("a sunny evening" is an evening)
        specific = [t for t in times if t != "day"]
        scene.time_of_day = specific[0] if specific else "day"
    elif scene.setting == "space":
        scene.time_of_day = "night"
    if weathers:
        scene.weather = next((w for w in ("storm", "snow", "rain", "fog", "cloudy") if w in weathers), weathers[0])
    if scene.time_of_day == "night" and "sun" in objects and "sun" not in " ".join(scene.keywords):
        objects.remove("sun")
    seen: list[str] = []
    for obj in objects:
        if obj not in seen:
            seen.append(obj)
    if scene.setting == "house" and "house" not in seen:
        seen.append("house")
    scene.objects = seen
    scene.characters = list(characters.values())
    return scene


def _modifiers(before: str, matched: str) -> tuple[str | None, int, float]:
    """Colour, count and size from the few words (or characters) just before a character noun."""
    colour = None
    count = 2 if not _CJK.search(matched) and _plural(matched) else 1
    size = 1.0
    if _CJK.search(matched):
        tail = before[-5:]
        for ch in tail:
            if ch in _ZH_COLOURS:
                colour = _ZH_COLOURS[ch]
            if ch in _ZH_NUMBERS:
                count = _ZH_NUMBERS[ch]
        if any(s in tail[-3:] for s in ("小",)) or matched.startswith("小"):
            size = 0.8
        elif "大" in tail[-2:] or matched.startswith("大"):
            size = 1.25
    else:
        words = re.findall(r"[a-z]+", before)[-4:]
        for word in words:
            if word in _EN_COLOURS:
                colour = _EN_COLOURS[word]
            if word in _EN_NUMBERS and not (word in ("a", "an") and _plural(matched)):
                count = _EN_NUMBERS[word]
            if word in _SMALL:
                size = 0.8
            elif word in _BIG:
                size = 1.25
        if matched in ("goldfish",):
            colour = colour or "orange"
    return colour, max(1, min(count, 6)), size
