//! Unit tests of the chat module (templates, helpers, dates, tojson, Python methods); the
//! goldens from llama.cpp are in tests/chat_template.rs.

use std::borrow::Cow;

use super::dates::EPOCH;
use super::environment::float_to_string_like_cpp;
use super::tojson::float_to_json_like_cpp;
use super::value::OrderedMap;
use super::*;

fn render(src: &str, messages: &[ChatMessage]) -> Result<String, TemplateError> {
    ChatTemplate::new(src, "<s>", "</s>")?.render(messages, &RenderOptions::default())
}

fn eval(expr: &str) -> String {
    render(&format!("{{{{ {expr} }}}}"), &[]).unwrap()
}

#[test]
fn syntax_error_names_the_line() {
    let err = ChatTemplate::new("line one\n{% if x %}\n{{ 1 + }}\n", "", "").unwrap_err();
    match &err {
        TemplateError::Syntax { line, message } => {
            assert_eq!(*line, Some(3), "{err}");
            assert!(!message.is_empty());
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    assert!(err.to_string().contains("line 3"), "{err}");
    let err = ChatTemplate::new("{% for m in messages %}\nno end", "", "").unwrap_err();
    assert!(matches!(err, TemplateError::Syntax { .. }), "{err:?}");
}

#[test]
fn raise_exception_carries_the_message() {
    let err = render(
        "{% if messages[0].role != 'user' %}{{ raise_exception('Roles must alternate!') }}{% endif %}ok",
        &[ChatMessage::assistant("hi")],
    )
    .unwrap_err();
    assert_eq!(err, TemplateError::Raised("Roles must alternate!".into()));
    assert!(err.to_string().contains("Roles must alternate!"));
    // inside a macro and a loop too
    let err = render(
        "{% macro check(m) %}{% if m.role == 'x' %}{{ raise_exception('bad role ' + m.role) }}{% endif %}{% endmacro %}\
         {% for m in messages %}{{ check(m) }}{% endfor %}",
        &[ChatMessage::user("a"), ChatMessage::new("x", "b")],
    )
    .unwrap_err();
    assert_eq!(err, TemplateError::Raised("bad role x".into()));
}

#[test]
fn render_errors_name_the_line() {
    let err = render("a\nb\n{{ messages | no_such_filter }}", &[]).unwrap_err();
    match err {
        TemplateError::Render { line, .. } => assert_eq!(line, Some(3)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_roles_are_left_to_the_template() {
    let src = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}";
    let out = render(
        src,
        &[
            ChatMessage::new("critic", "fine"),
            ChatMessage::new("", "x"),
        ],
    )
    .unwrap();
    assert_eq!(out, "<critic>fine<>x");
}

#[test]
fn message_adjustments() {
    let src = "{% for m in messages %}[{{ m.role }}|{{ m.content }}|{{ m.content is defined }}]{% endfor %}";
    let msgs = [
        ChatMessage::new("developer", "dev"),
        ChatMessage::user(MessageContent::Parts(vec![
            ContentPart::text("a"),
            ContentPart {
                kind: "image_url".into(),
                text: None,
            },
            ContentPart::text("b"),
        ])),
        ChatMessage::assistant(""),
    ];
    let out = render(src, &msgs).unwrap();
    assert_eq!(out, "[system|dev|True][user|a\nb|True][assistant||False]");
    // GPT-OSS templates keep `developer`
    let out = render(&format!("{{# <|channel|> #}}{src}"), &msgs[..1]).unwrap();
    assert_eq!(out, "[developer|dev|True]");
}

#[test]
fn system_merged_when_template_ignores_it() {
    // a template that only shows user/assistant turns
    let src = "{% for m in messages %}{% if m.role != 'system' %}<{{ m.role }}>{{ m.content }}{% endif %}{% endfor %}";
    let t = ChatTemplate::new(src, "", "").unwrap();
    assert!(!t.supports_system_role(&RenderOptions::default()));
    let out = t
        .render(
            &[ChatMessage::system("S"), ChatMessage::user("U")],
            &RenderOptions::default(),
        )
        .unwrap();
    assert_eq!(out, "<user>S\nU");
    // alone, it is dropped
    let out = t
        .render(&[ChatMessage::system("S")], &RenderOptions::default())
        .unwrap();
    assert_eq!(out, "");
    // a template that raises on system is probed as not supporting it
    let src = "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system') }}{% endif %}{{ m.content }};{% endfor %}";
    let t = ChatTemplate::new(src, "", "").unwrap();
    let out = t
        .render(
            &[ChatMessage::system("S"), ChatMessage::user("U")],
            &RenderOptions::default(),
        )
        .unwrap();
    assert_eq!(out, "S\nU;");
}

#[test]
fn missing_content_concatenates_as_empty() {
    let src = "{% for m in messages %}{{ '<' + m.role + '>' + m['content'] + '\\n' }}{% endfor %}";
    let out = render(src, &[ChatMessage::user("a"), ChatMessage::assistant("")]).unwrap();
    assert_eq!(out, "<user>a\n<assistant>\n");
}

#[test]
fn variables_like_llama_cpp() {
    let src = "{{ bos_token }}|{{ eos_token }}|{{ enable_thinking }}|{{ add_generation_prompt }}|{{ datetime }}|{{ date_string }}|{{ strftime_now('%Y-%m-%d %A %-d %j') }}|{{ tools is defined }}";
    let t = ChatTemplate::new(src, "<s>", "</s>").unwrap();
    let opts = RenderOptions {
        now: ChatDate::new(2024, 7, 6),
        ..RenderOptions::default()
    };
    let out = t.render(&[], &opts).unwrap();
    assert_eq!(
        out,
        "<s>|</s>|True|True|Jul 06 2024|06 Jul 2024|2024-07-06 Saturday 6 188|False"
    );
    // kwargs override the standard variables, not add_generation_prompt when it is true
    let opts = opts
        .kwarg("enable_thinking", false)
        .kwarg("date_string", "26 Jul 2024")
        .kwarg("add_generation_prompt", false);
    let out = t.render(&[], &opts).unwrap();
    assert_eq!(
        out,
        "<s>|</s>|False|True|Jul 06 2024|26 Jul 2024|2024-07-06 Saturday 6 188|False"
    );
    let opts = RenderOptions {
        add_generation_prompt: false,
        tools: Some(Value::from(Vec::<Value>::new())),
        ..opts
    };
    assert!(t.render(&[], &opts).unwrap().contains("|False|Jul 06 2024"));
}

#[test]
fn dates() {
    let d = ChatDate::from_unix_seconds(1_732_579_200 + 3_723); // 2024-11-26 01:02:03
    assert_eq!(d, ChatDate::with_time(2024, 11, 26, 1, 2, 3).unwrap());
    assert_eq!(
        d.strftime("%d %b %Y %H:%M:%S %a %I%p %y %e %%"),
        "26 Nov 2024 01:02:03 Tue 01AM 24 26 %"
    );
    assert_eq!(ChatDate::from_unix_seconds(0), EPOCH);
    assert_eq!(ChatDate::from_unix_seconds(-1).year, 1969);
    assert_eq!(ChatDate::new(2023, 2, 29), None);
    assert!(ChatDate::new(2024, 2, 29).is_some());
    assert_eq!(
        ChatDate::new(2000, 1, 1).unwrap().strftime("%A %j %Q %"),
        "Saturday 001 %Q %"
    );
    assert!(ChatDate::now_utc().is_some());
}

#[test]
fn tojson_like_llama_cpp() {
    let mut m = OrderedMap::default();
    m.insert("z", Value::from("é\"\n<>&'"));
    m.insert(
        "a",
        Value::from(vec![Value::from(1), Value::from(2.5), Value::from(())]),
    );
    m.insert("t", Value::from(true));
    m.insert("e", OrderedMap::default().into_value());
    let obj = m.into_value();
    let t = ChatTemplate::new(
        "{{ x | tojson }}\n{{ x | tojson(indent=2) }}\n{{ x | tojson(ensure_ascii=true) }}\n{{ tojson('🎉', ensure_ascii=true) }}\n{{ x | tojson(separators=(',', ':')) }}",
        "",
        "",
    )
    .unwrap();
    let out = t
        .render(&[], &RenderOptions::default().kwarg("x", obj))
        .unwrap();
    let expected = "{\"z\": \"é\\\"\\n<>&'\", \"a\": [1, 2.5, null], \"t\": true, \"e\": {}}\n\
{\n  \"z\": \"é\\\"\\n<>&'\",\n  \"a\": [\n    1,\n    2.5,\n    null\n  ],\n  \"t\": true,\n  \"e\": {}\n}\n\
{\"z\": \"\\u00e9\\\"\\n<>&'\", \"a\": [1, 2.5, null], \"t\": true, \"e\": {}}\n\
\"\\ud83c\\udf89\"\n\
{\"z\":\"é\\\"\\n<>&'\",\"a\":[1,2.5,null],\"t\":true,\"e\":{}}";
    assert_eq!(out, expected);
    assert_eq!(float_to_json_like_cpp(0.1), "0.1");
    assert_eq!(float_to_json_like_cpp(1.0), "1");
    assert_eq!(float_to_json_like_cpp(1.23456789), "1.23457");
    assert_eq!(float_to_json_like_cpp(1e20), "1e+20");
    assert_eq!(float_to_json_like_cpp(123456.0), "123456");
    assert_eq!(float_to_json_like_cpp(1234567.0), "1.23457e+06");
    assert_eq!(float_to_json_like_cpp(0.0001), "0.0001");
    assert_eq!(float_to_json_like_cpp(0.00001), "1e-05");
    assert_eq!(float_to_string_like_cpp(2.5), "2.5");
    assert_eq!(float_to_string_like_cpp(2.0), "2.0");
}

#[test]
fn python_string_methods() {
    assert_eq!(eval("'  a b  '.strip()"), "a b");
    assert_eq!(eval("'xxaxx'.strip('x')"), "a");
    assert_eq!(eval("'  a '.lstrip() + '|'"), "a |");
    assert_eq!(eval("'  a '.rstrip() + '|'"), "  a|");
    assert_eq!(eval("'hello'.startswith('he')"), "True");
    assert_eq!(eval("'hello'.startswith(('x', 'h'))"), "True");
    assert_eq!(eval("'hello'.endswith('lo')"), "True");
    assert_eq!(eval("'a,b,,c'.split(',') | join('|')"), "a|b||c");
    assert_eq!(eval("'a,b,c'.split(',', 1) | join('|')"), "a|b,c");
    assert_eq!(eval("'  a  b c '.split() | join('|')"), "a|b|c");
    assert_eq!(eval("' a  b c '.split(none, 1) | join('|')"), "a|b c ");
    assert_eq!(eval("'a,b,c'.rsplit(',', 1) | join('|')"), "a,b|c");
    assert_eq!(eval("' a  b c '.rsplit(none, 1) | join('|')"), " a  b|c");
    assert_eq!(eval("'</think>x'.split('</think>')[-1]"), "x");
    assert_eq!(eval("'aaa'.replace('a', 'b')"), "bbb");
    assert_eq!(eval("'aaa'.replace('a', 'b', 2)"), "bba");
    assert_eq!(eval("'MiXed'.upper() + 'MiXed'.lower()"), "MIXEDmixed");
    assert_eq!(
        eval("\"they're bill's FRIENDS\".title()"),
        "They're Bill's Friends"
    );
    assert_eq!(eval("'{\"a\": 18 °C}'.title()"), "{\"a\": 18 °c}");
    assert_eq!(eval("'hello WORLD'.capitalize()"), "Hello world");
    assert_eq!(eval("'héllo'.find('l')"), "2");
    assert_eq!(eval("'hello'.find('z')"), "-1");
    assert_eq!(eval("'a-b-c'.count('-')"), "2");
    assert_eq!(eval("', '.join(['a', 'b'])"), "a, b");
    assert_eq!(eval("'{} + {} = {0}'.format(1, 2)"), "1 + 2 = 1");
    assert_eq!(eval("'123'.isdigit()"), "True");
    assert_eq!(
        eval("'ab'.isalpha() and 'a1'.isalnum() and ' '.isspace()"),
        "True"
    );
    assert!(render("{{ 'x'.no_such_method() }}", &[]).is_err());
}

#[test]
fn python_dict_methods() {
    let mut m = OrderedMap::default();
    m.insert("b", Value::from(1));
    m.insert("a", Value::from(2));
    let t = ChatTemplate::new(
        "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{{ d.keys() | join(',') }}|{{ d.values() | join(',') }}|{{ d.get('a') }}|{{ d.get('zz', 'dflt') }}|{{ d.get('zz') is none }}",
        "",
        "",
    )
    .unwrap();
    let out = t
        .render(&[], &RenderOptions::default().kwarg("d", m.into_value()))
        .unwrap();
    assert_eq!(out, "b=1;a=2;|b,a|1,2|2|dflt|True");
    // list.append is reported clearly
    let err = render("{% set xs = [] %}{{ xs.append(1) }}", &[]).unwrap_err();
    assert!(err.to_string().contains("append"), "{err}");
}

#[test]
fn printing_like_llama_cpp() {
    assert_eq!(eval("none"), "");
    assert_eq!(eval("undefined_name"), "");
    assert_eq!(eval("undefined_name.attr.deeper"), "");
    assert_eq!(eval("true"), "True");
    assert_eq!(eval("1.5"), "1.5");
    assert_eq!(eval("7"), "7");
    assert_eq!(eval("['a', 1]"), "a1");
}

#[test]
fn whitespace_control_like_llama_cpp() {
    // trim_blocks + lstrip_blocks, one trailing newline dropped
    let src = "{% for m in messages %}\n    {% if true %}\n{{ m.content }}\n    {% endif %}\n{% endfor %}\nend\n";
    let out = render(src, &[ChatMessage::user("a"), ChatMessage::user("b")]).unwrap();
    assert_eq!(out, "a\nb\nend");
}

#[test]
fn no_template_and_chatml_fallback() {
    assert_eq!(
        ChatTemplate::from_metadata(None, "<s>", "</s>").unwrap_err(),
        TemplateError::NoTemplate
    );
    assert_eq!(
        ChatTemplate::from_metadata(Some("  \n"), "<s>", "</s>").unwrap_err(),
        TemplateError::NoTemplate
    );
    assert!(TemplateError::NoTemplate
        .to_string()
        .contains("no chat template"));
    let t = ChatTemplate::chatml("", "");
    let out = t
        .render(
            &[ChatMessage::system("S"), ChatMessage::user("U")],
            &RenderOptions::default(),
        )
        .unwrap();
    assert_eq!(
        out,
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    );
    let out = t
        .render(
            &[ChatMessage::user("U")],
            &RenderOptions {
                add_generation_prompt: false,
                ..RenderOptions::default()
            },
        )
        .unwrap();
    assert_eq!(out, "<|im_start|>user\nU<|im_end|>\n");
}

#[test]
fn bos_eos_strip() {
    assert_eq!(
        strip_bos_eos("<s>hi</s>", "<s>", "</s>", true, false),
        "hi</s>"
    );
    assert_eq!(
        strip_bos_eos("<s>hi</s>", "<s>", "</s>", false, true),
        "<s>hi"
    );
    assert_eq!(strip_bos_eos("<s>hi</s>", "<s>", "</s>", true, true), "hi");
    assert_eq!(
        strip_bos_eos("<s>hi</s>", "<s>", "</s>", false, false),
        "<s>hi</s>"
    );
    assert_eq!(strip_bos_eos("hi", "", "", true, true), "hi");
    assert_eq!(strip_bos_eos(" <s>hi", "<s>", "", true, false), " <s>hi");
    let t = ChatTemplate::new("{{ bos_token }}x{{ eos_token }}", "<s>", "</s>").unwrap();
    let out = t
        .render_prompt(&[], &RenderOptions::default(), true, false)
        .unwrap();
    assert_eq!(out, "x</s>");
}

#[test]
fn llama_cpp_source_patches() {
    let gpt = "<|channel|>{%- for message in messages %}{%- if \"<|channel|>analysis<|message|>\" in message.content or \"<|channel|>final<|message|>\" in message.content %}X{%- endif %}{%- endfor %}";
    assert_eq!(
        patch_template_like_llama_cpp(gpt),
        "<|channel|>{%- for message in messages %}{%- if false %}X{%- endif %}{%- endfor %}"
    );
    let mistral = "[TOOL_CALLS]{%- if (message['content'] is none or message['content'] == '' or message['content']|length == 0) and (message['tool_calls'] is not defined or message['tool_calls'] is none or message['tool_calls']|length == 0) %}";
    assert_eq!(
        patch_template_like_llama_cpp(mistral),
        "[TOOL_CALLS]{%- if false %}"
    );
    assert!(matches!(
        patch_template_like_llama_cpp("plain"),
        Cow::Borrowed("plain")
    ));
}

#[test]
fn message_serde_roundtrip_keeps_order() {
    let mut call = OrderedMap::default();
    call.insert("unit", Value::from("c"));
    call.insert("location", Value::from("Paris"));
    let msg = ChatMessage::assistant("x").with_tool_calls(Value::from(vec![call.into_value()]));
    let json = serde_json::to_string(&msg).unwrap();
    assert_eq!(
        json,
        r#"{"role":"assistant","content":"x","tool_calls":[{"unit":"c","location":"Paris"}]}"#
    );
    let back: ChatMessage = serde_json::from_str(&json).unwrap();
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
    let parts: ChatMessage =
        serde_json::from_str(r#"{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{}}],"extra":1}"#)
            .unwrap();
    assert_eq!(parts.content.unwrap().joined(), "a");
    assert!(serde_json::from_str::<ChatMessage>(r#"{"content":"x"}"#).is_err());
    assert!(serde_json::from_str::<ChatMessage>(r#"{"role":"user","content":5}"#).is_err());
    assert!(serde_json::from_str::<ChatMessage>(r#"[1]"#).is_err());
    // lists of messages: from a JsonValue (order kept) or any Serialize
    let JsonValue(v) =
        serde_json::from_str(r#"[{"role":"assistant","tool_calls":[{"z":1,"a":2}]}]"#).unwrap();
    let m = messages_from_value(&v).unwrap();
    assert_eq!(
        serde_json::to_string(&m).unwrap(),
        r#"[{"role":"assistant","tool_calls":[{"z":1,"a":2}]}]"#
    );
    let j: serde_json::Value = serde_json::from_str(r#"[{"role":"user","content":"hi"}]"#).unwrap();
    assert_eq!(
        messages_from_value(&j).unwrap(),
        vec![ChatMessage::user("hi")]
    );
    let err = messages_from_value(&serde_json::json!([{"role": "user"}, {"content": "x"}]));
    assert!(err.unwrap_err().to_string().contains("messages[1]"));
    assert!(messages_from_value(&serde_json::json!({"role": "user"})).is_err());
}

#[test]
fn never_panics_on_odd_input() {
    let templates = [
        "",
        "{{",
        "{%",
        "{#",
        "}}",
        "{{ messages[99].content.x.y }}",
        "{{ 1/0 }}",
        "{{ messages | tojson }}",
        "{% for m in messages recursive %}{{ loop(m) }}{% endfor %}",
        "{{ range(10) | tojson }}",
        "{{ 'a' * 3 }}",
        "{{ none.strip() }}",
        "{{ ''.split('') }}",
        "{% set x = namespace(a=1) %}{{ x.a }}",
        "{{ messages[0]['content'][0] }}",
        "{{ raise_exception() }}",
        "{{ strftime_now() }}",
        "{{ tojson() }}",
        "{{ 'x'.format('{') }}",
        "{{ '{'.format() }}",
        "{{ ''.center(3) }}",
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
        "\u{0}\u{ffff}{{ '\\u00e9' }}",
    ];
    let messages = [
        ChatMessage::user(""),
        ChatMessage::new("", MessageContent::Parts(vec![])),
        ChatMessage::assistant("\u{0}🎉").with_tool_calls(Value::from("not a list")),
    ];
    for src in templates {
        if let Ok(t) = ChatTemplate::new(src, "", "") {
            let _ = t.render(&messages, &RenderOptions::default());
            let _ = t.render(&[], &RenderOptions::default());
        }
    }
}

/// Random templates stitched from Jinja fragments, rendered with odd messages and options:
/// errors are fine, panics are not.
#[test]
fn never_panics_on_random_templates() {
    const FRAGMENTS: &[&str] = &[
        "{{",
        "}}",
        "{%",
        "%}",
        "{%-",
        "-%}",
        "{#",
        "#}",
        " for m in messages ",
        " endfor ",
        " if ",
        " elif ",
        " else ",
        " endif ",
        "m",
        "m.content",
        "m['role']",
        "messages[0]",
        "messages[-1]",
        "messages[1:]",
        ".",
        "(",
        ")",
        "[",
        "]",
        "'a'",
        "\"é🎉\"",
        "1",
        "-1",
        "2.5",
        "+",
        "-",
        "*",
        "/",
        "~",
        "|",
        " tojson",
        " tojson(indent=2)",
        " trim",
        " upper",
        " title",
        " length",
        " join(',')",
        ".strip()",
        ".split()",
        ".split('')",
        ".items()",
        ".get('x')",
        ".title()",
        ".format(1)",
        ".append(1)",
        "raise_exception('x')",
        "strftime_now('%c')",
        " loop.index ",
        " set ns = namespace(a=1) ",
        " set ns.a = 2 ",
        " is defined ",
        " is string ",
        " not ",
        " none ",
        " true ",
        " in ",
        "range(3)",
        ",",
        " ",
        "\n",
        ":",
        "{",
        "}",
        "tools",
        "bos_token",
        "add_generation_prompt",
        " macro f(x) ",
        " endmacro ",
        "f(1)",
        " break ",
        " continue ",
        "x",
        "=",
    ];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: usize| -> usize {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut tool_call = OrderedMap::default();
    tool_call.insert("function", Value::from("oops"));
    let messages = [
        ChatMessage::system("sys"),
        ChatMessage::user(MessageContent::Parts(vec![ContentPart::text("")])),
        ChatMessage::new("tool", "\u{0}")
            .with_tool_calls(Value::from(vec![tool_call.into_value()])),
        ChatMessage::new("developer", "🎉"),
    ];
    let opts = RenderOptions {
        tools: Some(Value::from(vec![Value::from(1)])),
        now: ChatDate::new(2024, 2, 29),
        ..RenderOptions::default()
    }
    .kwarg("x", Value::from(()));
    let mut parsed = 0;
    for _ in 0..3000 {
        let len = 1 + next(24);
        let src: String = (0..len).map(|_| FRAGMENTS[next(FRAGMENTS.len())]).collect();
        if let Ok(t) = ChatTemplate::new(&src, "<s>", "</s>") {
            parsed += 1;
            let _ = t.render(&messages, &opts);
            let _ = t.render_prompt(&messages[..next(4)], &RenderOptions::default(), true, true);
        }
    }
    assert!(parsed > 100, "only {parsed} random templates parsed");
}
