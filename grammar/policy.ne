# The policy language: a subset of HCL (see ../shared/spec/policy-language.md).
# Newlines are not significant, so attributes and blocks simply follow one another.
# The generated parser (src/syntax/grammar.generated.ts) is a build output: `npm run grammar`.
@preprocessor typescript

@{%
import { lexer } from './lexer';
import { block, attribute, stringLiteral, numberLiteral, booleanLiteral, listLiteral } from './build';
%}

@lexer lexer

# Not `item:*`: nearley builds that list with `concat`, a copy per item, so a block of 25,000 items
# that the fast path hands over (one with an error, or never closed) took gigabytes. `items` is
# extended in place, as `values` is; safe because no two parses continue one list (unambiguous).
body      -> items                                     {% id %}

items     -> null                                      {% () => [] %}
           | items item                                {% ([items, item]) => { items.push(item); return items; } %}

item      -> block                                     {% id %}
           | attribute                                 {% id %}

block     -> %identifier label:? %lbrace body %rbrace  {% ([type, label, , items, close]) => block(type, label, items, close) %}

label     -> %string                                   {% ([t]) => stringLiteral(t) %}

attribute -> %identifier %equals value                 {% ([name, , value]) => attribute(name, value) %}

value     -> %string                                   {% ([t]) => stringLiteral(t) %}
           | %number                                   {% ([t]) => numberLiteral(t) %}
           | %kwTrue                                   {% ([t]) => booleanLiteral(t) %}
           | %kwFalse                                  {% ([t]) => booleanLiteral(t) %}
           | list                                      {% id %}

list      -> %lbracket %rbracket                       {% ([open, close]) => listLiteral(open, [], close) %}
           | %lbracket values %comma:? %rbracket       {% ([open, items, , close]) => listLiteral(open, items, close) %}

values    -> value                                     {% ([v]) => [v] %}
           | values %comma value                       {% ([vs, , v]) => { vs.push(v); return vs; } %}
