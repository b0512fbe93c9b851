"""Chinese address parsing with `cpca`: province, city, district, then town, village and the rest."""

from __future__ import annotations

import re
import warnings
from typing import Any

from raygent.schema import ToolExample
from raygent.toolhub.base import Tool

_TOWN = re.compile(r"^(.+?(?:街道|镇|乡|苏木))")
_VILLAGE = re.compile(r"^(.+?(?:社区居委会|社区|村委会|居委会|嘎查|村+))")
_STREET = re.compile(r"^(.+?(?:大道|大街|路|街|巷|弄))")
_ROAD_SUFFIXES = ("大街", "大道", "路", "街", "巷", "弄")
_NUMBER = re.compile(r"^(\d+号)")


def parse_address(address: str) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import cpca
    row = cpca.transform([address]).to_dict("records")[0]
    result: dict[str, Any] = {
        "province": row.get("省") or None,
        "city": row.get("市") or None,
        "district": row.get("区") or None,
    }
    if result["city"] == "市辖区":  # municipalities (北京, 上海, 天津, 重庆) are their own city
        result["city"] = result["province"]
    rest = (row.get("地址") or "").strip()
    for key, pattern in (("town", _TOWN), ("village", _VILLAGE), ("road", _STREET), ("number", _NUMBER)):
        m = pattern.match(rest)
        if key == "village" and m and rest[m.end():].startswith(_ROAD_SUFFIXES):
            continue  # 中关村大街 is a road named after a village, not a village
        if m:
            result[key] = m.group(1)
            rest = rest[m.end():]
    result["detail"] = rest or None
    result["adcode"] = row.get("adcode") or None
    return {k: v for k, v in result.items() if v is not None}


class AddressParseTool(Tool):
    name = "address_parse"
    description = "识别中文地址中的省、市、区、街道/镇、村等元素 (parse a Chinese address into province, city, district, town, village)."
    parameters = {
        "type": "object",
        "properties": {"address": {"type": "string", "description": "the address text, e.g. 浙江杭州市江干区九堡镇"}},
        "required": ["address"],
    }
    domain = "nlp"
    timeout_s = 30.0
    examples = [
        ToolExample(query="把这个地址拆成省市区：广东省深圳市南山区粤海街道科技园",
                    arguments={"address": "广东省深圳市南山区粤海街道科技园"}),
    ]

    async def call(self, address: str) -> dict[str, Any]:
        if not address.strip():
            raise ValueError("address is empty")
        return parse_address(address)
