"""Each automatic filter, with an English and a Chinese case, and its visible reason."""

from tunelab.synth import filters

CFG = filters.FilterConfig()


def verdict(text: str, seeds=(), kept=(), cfg=CFG, output: str = ""):
    return filters.check({"instruction": text, "input": "", "output": output}, list(seeds), list(kept), cfg)


def test_too_short_english_and_chinese():
    assert verdict("Hi there")[0] == "too_short"
    assert verdict("Tell me a joke.") is None
    assert verdict("好的")[0] == "too_short"  # two characters = two tokens
    assert verdict("给我讲个笑话。") is None
    assert "minimum 3" in verdict("Hi")[1]


def test_too_long_english_and_chinese():
    cfg = filters.FilterConfig(max_tokens=10)
    assert verdict("word " * 11, cfg=cfg)[0] == "too_long"
    assert verdict("这是一个非常非常长的问题吗？", cfg=cfg)[0] == "too_long"
    assert verdict("这是问题吗？", cfg=cfg) is None


def test_duplicate_of_seed_by_rouge_l_english_and_chinese():
    rule, reason = verdict("Give me three tips for staying healthy.", seeds=["Give three tips for staying healthy."])
    assert rule == "duplicate_seed" and "ROUGE-L" in reason
    assert verdict("Write a haiku about autumn leaves.", seeds=["Give three tips for staying healthy."]) is None
    assert verdict("我最近的运气怎么样呢？", seeds=["我最近运气怎么样？"])[0] == "duplicate_seed"
    assert verdict("明天适合去爬山吗？", seeds=["我最近运气怎么样？"]) is None


def test_duplicate_of_earlier_item_within_a_batch():
    items = [{"instruction": t} for t in ("What is the capital of France?", "What is the capital of France, please?",
                                          "今天晚饭吃什么好？", "今天的晚饭吃什么好呢？")]
    filters.apply(items, [], CFG)
    assert [it["status"] for it in items] == ["accepted", "rejected", "accepted", "rejected"]
    assert items[1]["rule"] == items[3]["rule"] == "duplicate"
    assert "an earlier item" in items[3]["reason"]


def test_blocklist_whole_words_english_substring_chinese_and_configurable():
    assert verdict("Describe the image below.")[1] == "contains the blocked keyword 'image'"
    assert verdict("Imagine you are a cat.") is None  # "imagine" is not "image"
    assert verdict("Who won in the competition yesterday?")[0] == "blocklist"
    assert verdict("帮我看看这张图片里有什么。")[0] == "blocklist"
    custom = filters.FilterConfig(blocklist=["weather", "天气"])
    assert verdict("What is the weather like?", cfg=custom)[0] == "blocklist"
    assert verdict("明天天气怎么样？", cfg=custom)[0] == "blocklist"
    assert verdict("Describe the image below.", cfg=custom) is None


def test_empty_output_and_output_format():
    need = filters.FilterConfig(require_output=True)
    item = {"instruction": "Tell me a joke.", "output": "  "}
    assert filters.check_output(item, need) == ("empty_output", "empty output")
    assert filters.check_output({"instruction": "讲个笑话。", "output": ""}, need)[0] == "empty_output"
    assert filters.check_output(item, CFG) is None  # outputs optional by default
    js = filters.FilterConfig(output_format="json")
    assert filters.check_output({"output": "{'a': 1}"}, js) == ("format", "output is not valid JSON")
    assert filters.check_output({"output": '{"答案": 1}'}, js) is None
    num = filters.FilterConfig(output_format="number")
    assert filters.check_output({"output": "四十二"}, num)[0] == "format"
    assert filters.check_output({"output": "42"}, num) is None


def test_reason_counts_groups_rules_into_advice_and_keeps_reviewer_text():
    items = [
        {"status": "rejected", "rule": "too_short", "reason": "too short (1 tokens, minimum 3)"},
        {"status": "rejected", "rule": "too_short", "reason": "too short (2 tokens, minimum 3)"},
        {"status": "rejected", "rule": "review", "reason": "答案不对"},
        {"status": "accepted", "rule": "", "reason": ""},
    ]
    assert filters.reason_counts(items) == [(filters.ADVICE["too_short"], 2), ("答案不对", 1)]


def test_instruction_carrying_its_own_answer():
    assert verdict("What's a fun game to play? Answer: chess.")[0] == "answer_inside"
    assert verdict("How do I convert units?\nSolution: 1. multiply")[0] == "answer_inside"
    assert verdict("今天吃什么好？答案：面条。")[0] == "answer_inside"
    assert verdict("What is the answer to 2 + 2?") is None


def test_model_chatter_is_blocked():
    assert verdict("The first example is a riddle. Here's a list of 8 additional examples")[0] == "blocklist"
