# The policy language: a subset of HCL (see ../shared/spec/policy-language.md).
# Newlines are not significant, so attributes and blocks simply follow one another.
# The generated parser (src/syntax/grammar.generated.ts) is a build output: `npm run grammar`.
@preprocessor typescript

@{%
import { lexer } from './lexer';
import { block, attribute, stringLiteral, numberLiteral, booleanLiteral, listLiteral } from './build';
%}

@lexer lexer

body      -> item:*                                    {% ([items]) => items %}

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
