"""Parsing messy model answers into items; everything else comes back as a rejection with a reason."""

from tunelab.synth import parse


def instructions(p: parse.Parsed) -> list[str]:
    return [it["instruction"] for it in p.items]


def test_numbered_list_with_chatter_keeps_chatter_as_rejections():
    p = parse.parse("Here are some questions:\n1. What is AI?\n2) How do I cook rice?\n\n**3.** Name a planet.\nHope this helps!")
    assert p.shape == "numbered"
    assert instructions(p) == ["What is AI?", "How do I cook rice?", "Name a planet."]
    assert [r["text"] for r in p.rejected] == ["Here are some questions:", "Hope this helps!"]
    assert all(r["reason"].startswith("not an item") for r in p.rejected)


def test_numbered_list_repeated_with_commentary_between_lists():
    p = parse.parse("1. A b c?\n2. D e f?\nA numbered list would be:\n1. G h i?")
    assert instructions(p) == ["A b c?", "D e f?", "G h i?"]
    assert p.rejected == [{"text": "A numbered list would be:", "reason": "not an item: commentary around the list"}]


def test_chinese_numbering_styles():
    assert instructions(parse.parse("１．我最近运气怎么样？\n２．明天适合出门吗？")) == ["我最近运气怎么样？", "明天适合出门吗？"]
    assert instructions(parse.parse("第1条：我该换工作吗？\n第二条：今年能存下钱吗？")) == ["我该换工作吗？", "今年能存下钱吗？"]
    assert instructions(parse.parse("一、我最近运气好吗？\n二、今年能发财吗？")) == ["我最近运气好吗？", "今年能发财吗？"]
    assert instructions(parse.parse("1、周末去哪儿玩？\n2、晚饭吃什么好？")) == ["周末去哪儿玩？", "晚饭吃什么好？"]


def test_bullets_quotes_and_prefixes_are_stripped():
    p = parse.parse('- "Name a fruit."\n* Question: Describe a cat.\n• 问题：写一首关于春天的诗。')
    assert p.shape == "bulleted"
    assert instructions(p) == ["Name a fruit.", "Describe a cat.", "写一首关于春天的诗。"]


def test_fenced_json_with_alpaca_objects_and_strings():
    text = 'Sure!\n```json\n[{"instruction": "Add 2 and 3", "input": "<noinput>", "output": "5"}, "Tell a joke", 7]\n```'
    p = parse.parse(text)
    assert p.shape == "json"
    assert p.items == [{"instruction": "Add 2 and 3", "input": "", "output": "5"},
                       {"instruction": "Tell a joke", "input": "", "output": ""}]
    reasons = [r["reason"] for r in p.rejected]
    assert "JSON element without an instruction" in reasons
    assert "not an item: text outside the JSON value" in reasons


def test_bare_json_object_holding_a_list_and_chinese_keys():
    assert instructions(parse.parse('{"questions": ["今天吃什么？", "明天去哪？"]}')) == ["今天吃什么？", "明天去哪？"]
    p = parse.parse('{"指令": "把这句话翻译成英文", "输入": "你好", "输出": "Hello"}')
    assert p.items == [{"instruction": "把这句话翻译成英文", "input": "你好", "output": "Hello"}]


def test_instruction_input_output_blocks():
    text = "Instruction: Sum the numbers.\nInput: 1, 2\nOutput: 3\n\n###\nInstruction: Say hi.\nOutput: Hi!\nThanks."
    p = parse.parse(text)
    assert p.shape == "blocks"
    assert p.items[0] == {"instruction": "Sum the numbers.", "input": "1, 2", "output": "3"}
    assert p.items[1]["instruction"] == "Say hi."
    assert p.items[1]["output"].startswith("Hi!")
    zh = parse.parse("指令：写一句问候语。\n输出：你好！")
    assert zh.items == [{"instruction": "写一句问候语。", "input": "", "output": "你好！"}]


def test_unparseable_text_is_rejected_with_a_reason_never_dropped():
    p = parse.parse("I cannot do that")
    assert p.items == [] and p.rejected == [
        {"text": "I cannot do that", "reason": "not a list item, JSON value or Instruction: block"}]
    empty = parse.parse("   ")
    assert empty.items == [] and empty.rejected[0]["reason"] == "the model returned nothing"


def test_plain_lines_fall_back_to_question_like_lines():
    p = parse.parse("What is love?\nblah blah\n为什么天空是蓝色的？")
    assert instructions(p) == ["What is love?", "为什么天空是蓝色的？"]
    assert p.rejected[0]["text"] == "blah blah"


def test_parse_answer_strips_label_and_fence():
    assert parse.parse_answer("Answer: Paris") == "Paris"
    assert parse.parse_answer("```json\n{\"a\": 1}\n```") == '{"a": 1}'
    assert parse.parse_answer("答案：巴黎") == "巴黎"


def test_a_lone_sentence_is_chatter_not_an_item():
    p = parse.parse("I'm ready to help. What's your next question or task?")
    assert p.items == [] and p.shape == "none"
    assert p.rejected[0]["reason"] == "not a list item, JSON value or Instruction: block"


def test_question_prefixed_lines_are_list_items_and_intros_are_rejected():
    p = parse.parse("1. Question: What is tea?\n2. Question: Why do cats purr?\n3. Here are 8 more examples:")
    assert instructions(p) == ["What is tea?", "Why do cats purr?"]
    assert p.rejected == [{"text": "Here are 8 more examples:", "reason": "not an item: an introduction (ends with ':')"}]
