//! The one parser, built on syn: it reads macro tokens and `.flow` files alike.

use super::ast::*;
use crate::diag::{Diagnostic, Diagnostics};
use proc_macro2::{Span, TokenStream, TokenTree};
use syn::parse::{ParseStream, Parser};
use syn::{token, Token};

mod kw {
    syn::custom_keyword!(bijector);
    syn::custom_keyword!(flow);
    syn::custom_keyword!(base);
    syn::custom_keyword!(inverse);
    syn::custom_keyword!(numeric);
    syn::custom_keyword!(map);
}

fn join(a: Span, b: Span) -> Span {
    a.join(b).unwrap_or(a)
}

/// Parses a whole token stream into items, recovering at item boundaries so that
/// several syntax errors are reported in one pass.
pub fn parse_tokens(tokens: TokenStream) -> Result<Ast, Diagnostics> {
    let mut diags = Diagnostics::new();
    let parser = |input: ParseStream| -> syn::Result<Ast> {
        let mut ast = Ast::default();
        while !input.is_empty() {
            let fork = input.fork();
            match parse_item(&fork) {
                Ok(item) => {
                    use syn::parse::discouraged::Speculative;
                    input.advance_to(&fork);
                    ast.items.push(item);
                }
                Err(e) => {
                    for e in e {
                        diags.push(syntax_error(e));
                    }
                    skip_item(input)?;
                }
            }
        }
        Ok(ast)
    };
    match parser.parse2(tokens) {
        Ok(ast) => diags.into_result(ast),
        Err(e) => {
            diags.push(syntax_error(e));
            Err(diags)
        }
    }
}

fn syntax_error(e: syn::Error) -> Diagnostic {
    let msg = e.to_string();
    let help = if msg.starts_with("expected") || msg.starts_with("unexpected") {
        Some("items are `bijector NAME(x; p: real) = EXPR;` or `flow NAME(x: R^n) { base normal; LAYER; ... }`")
    } else {
        None
    };
    let d = Diagnostic::at(e.span(), msg);
    match help {
        Some(h) => d.help(h),
        None => d,
    }
}

/// Skips to just after the next `;` or `{...}` group, or to the next item keyword.
fn skip_item(input: ParseStream) -> syn::Result<()> {
    let mut first = true;
    input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tt, next)) = rest.token_tree() {
            match &tt {
                TokenTree::Punct(p) if p.as_char() == ';' => return Ok(((), next)),
                TokenTree::Group(g) if g.delimiter() == proc_macro2::Delimiter::Brace => return Ok(((), next)),
                TokenTree::Ident(i) if !first && (i == "bijector" || i == "flow" || i == "map") => return Ok(((), rest)),
                _ => {}
            }
            first = false;
            rest = next;
        }
        Ok(((), rest))
    })
}

fn doc_of(attrs: &[syn::Attribute]) -> syn::Result<String> {
    let mut lines = Vec::new();
    for a in attrs {
        if !a.path().is_ident("doc") {
            return Err(syn::Error::new_spanned(a, "only `///` doc comments may precede an item"));
        }
        if let syn::Meta::NameValue(nv) = &a.meta {
            if let syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) = &nv.value {
                lines.push(s.value().trim().to_string());
            }
        }
    }
    Ok(lines.join("\n"))
}

fn ident(input: ParseStream) -> syn::Result<Ident> {
    let id: syn::Ident = input.call(syn::ext::IdentExt::parse_any)?;
    Ok(Ident { name: id.to_string(), span: id.span() })
}

fn parse_item(input: ParseStream) -> syn::Result<Item> {
    let attrs = input.call(syn::Attribute::parse_outer)?;
    let doc = doc_of(&attrs)?;
    if input.peek(kw::bijector) {
        input.parse::<kw::bijector>()?;
        parse_bijector(input, doc).map(Item::Bijector)
    } else if input.peek(kw::flow) {
        input.parse::<kw::flow>()?;
        parse_flow(input, doc).map(Item::Flow)
    } else if input.peek(kw::map) {
        input.parse::<kw::map>()?;
        parse_map(input, doc).map(Item::Map)
    } else {
        Err(input.error("expected `bijector`, `map` or `flow`"))
    }
}

fn parse_inverse(input: ParseStream) -> syn::Result<InverseSpec> {
    let mut inverse = InverseSpec::Derive;
    if input.peek(Token![where]) {
        input.parse::<Token![where]>()?;
        input.parse::<kw::inverse>().map_err(|e| syn::Error::new(e.span(), "expected `inverse` after `where`"))?;
        input.parse::<Token![=]>()?;
        if input.peek(kw::numeric) && (input.peek2(Token![;]) || input.peek2(Token![,])) {
            let k = input.parse::<kw::numeric>()?;
            inverse = InverseSpec::Numeric(k.span);
        } else {
            inverse = InverseSpec::Given(parse_expr(input)?);
        }
    }
    Ok(inverse)
}

/// `; NAME: KIND, ...` after an item's variable (nothing when the list is absent); `example`
/// shows one parameter, `whole` a whole parenthesized head, for messages.
fn param_list<K>(
    content: ParseStream,
    example: &str,
    whole: &str,
    kind: fn(ParseStream) -> syn::Result<K>,
) -> syn::Result<Vec<(Ident, K)>> {
    let mut params = Vec::new();
    if content.peek(Token![;]) {
        content.parse::<Token![;]>()?;
        while !content.is_empty() {
            let name = ident(content)?;
            content.parse::<Token![:]>().map_err(|e| {
                let (_, k) = example.split_once(": ").unwrap_or(("", example));
                syn::Error::new(e.span(), format!("expected `:` and a kind after parameter `{}` (e.g. `{}: {k}`)", name.name, name.name))
            })?;
            params.push((name, kind(content)?));
            if content.is_empty() {
                break;
            }
            content.parse::<Token![,]>()?;
        }
    } else if !content.is_empty() {
        return Err(content.error(format!("expected `;` before the parameter list, e.g. `{whole}`")));
    }
    Ok(params)
}

fn parse_map(input: ParseStream, doc: String) -> syn::Result<MapDef> {
    let name = ident(input)?;
    let content;
    syn::parenthesized!(content in input);
    let var = ident(&content)?;
    content.parse::<Token![:]>().map_err(|e| {
        syn::Error::new(e.span(), format!("expected `:` and the space after `{}`, e.g. `({}: sphere(n); ...)`", var.name, var.name))
    })?;
    let space = parse_term(&content)?;
    let params = param_list(&content, "m: matrix(n, n)", "(x: sphere(n); M: matrix(n, n), b: vector(n))", parse_term)?
        .into_iter()
        .map(|(name, kind)| MapParamDecl { name, kind })
        .collect();
    input.parse::<Token![=]>()?;
    let body = parse_expr(input)?;
    let inverse = parse_inverse(input)?;
    input.parse::<Token![;]>().map_err(|e| syn::Error::new(e.span(), "expected `;` at the end of the map"))?;
    Ok(MapDef { doc, name, var, space, params, body, inverse })
}

fn parse_bijector(input: ParseStream, doc: String) -> syn::Result<BijectorDef> {
    let name = ident(input)?;
    let content;
    syn::parenthesized!(content in input);
    let var = ident(&content)?;
    let mut domain = None;
    if content.peek(Token![:]) {
        content.parse::<Token![:]>()?;
        if content.peek(token::Paren) {
            let inner;
            let paren = syn::parenthesized!(inner in content);
            let lo = parse_expr(&inner)?;
            inner.parse::<Token![,]>()?;
            let hi = parse_expr(&inner)?;
            if !inner.is_empty() {
                return Err(inner.error("expected `)` after the interval `(lo, hi)`"));
            }
            domain = Some(Domain::Interval(lo, hi, paren.span.join()));
        } else {
            domain = Some(Domain::Named(ident(&content)?));
        }
    }
    let params = param_list(&content, "a: real", "(x; a: real, b: positive)", ident)?
        .into_iter()
        .map(|(name, kind)| ParamDecl { name, kind })
        .collect();
    input.parse::<Token![=]>()?;
    let body = parse_expr(input)?;
    let inverse = parse_inverse(input)?;
    input.parse::<Token![;]>().map_err(|e| syn::Error::new(e.span(), "expected `;` at the end of the bijector"))?;
    Ok(BijectorDef { doc, name, var, domain, params, body, inverse })
}

fn parse_flow(input: ParseStream, doc: String) -> syn::Result<FlowDef> {
    let name = ident(input)?;
    let content;
    syn::parenthesized!(content in input);
    let var = ident(&content)?;
    content.parse::<Token![:]>()?;
    let space = if content.peek(syn::Ident) && content.peek2(Token![^]) {
        let r = ident(&content)?;
        if !r.is("R") {
            return Err(syn::Error::new(r.span, format!("unknown space `{}^n`; write `R^n`", r.name)));
        }
        content.parse::<Token![^]>()?;
        let n: syn::LitInt = content.parse()?;
        let dim = n.base10_parse::<usize>()?;
        Space::Real(dim, join(r.span, n.span()))
    } else {
        Space::Other(parse_term(&content)?)
    };
    if !content.is_empty() {
        return Err(content.error("expected `)` after the flow's variable and space"));
    }
    let body;
    syn::braced!(body in input);
    let mut base = None;
    let mut layers = Vec::new();
    while !body.is_empty() {
        if body.peek(kw::base) && !body.peek2(Token![=]) {
            let k = body.parse::<kw::base>()?;
            let t = parse_term(&body)?;
            if base.is_some() {
                return Err(syn::Error::new(k.span, "a flow has one `base`; remove the second"));
            }
            base = Some(t);
        } else {
            layers.push(parse_term(&body)?);
        }
        body.parse::<Token![;]>().map_err(|e| syn::Error::new(e.span(), "expected `;` after the layer"))?;
    }
    Ok(FlowDef { doc, name, var, space, base, layers })
}

fn parse_term(input: ParseStream) -> syn::Result<Term> {
    if input.peek(token::Bracket) {
        let inner;
        let b = syn::bracketed!(inner in input);
        let mut items = Vec::new();
        while !inner.is_empty() {
            items.push(parse_term(&inner)?);
            if inner.is_empty() {
                break;
            }
            inner.parse::<Token![,]>()?;
        }
        return Ok(Term::List(items, b.span.join()));
    }
    if input.peek(syn::Ident) && !input.peek2(Token![+]) && !input.peek2(Token![-]) && !input.peek2(Token![*]) && !input.peek2(Token![/]) {
        let name = ident(input)?;
        let mut args = Vec::new();
        let mut span = name.span;
        if input.peek(token::Paren) {
            let inner;
            let p = syn::parenthesized!(inner in input);
            span = join(span, p.span.close());
            while !inner.is_empty() {
                let arg_name = if inner.peek(syn::Ident) && inner.peek2(Token![=]) {
                    let n = ident(&inner)?;
                    inner.parse::<Token![=]>()?;
                    Some(n)
                } else {
                    None
                };
                let value = parse_term(&inner)?;
                args.push(Arg { name: arg_name, value });
                if inner.is_empty() {
                    break;
                }
                inner.parse::<Token![,]>()?;
            }
        }
        return Ok(Term::Call { name, args, span });
    }
    Ok(Term::Expr(parse_expr(input)?))
}

/// Parses a scalar expression with the usual precedence: `+ -` < `* /` < unary `-` < calls.
pub fn parse_expr(input: ParseStream) -> syn::Result<Expr> {
    parse_sum(input)
}

fn parse_sum(input: ParseStream) -> syn::Result<Expr> {
    let mut lhs = parse_product(input)?;
    loop {
        let op = if input.peek(Token![+]) && !input.peek(Token![+=]) {
            input.parse::<Token![+]>()?;
            BinOp::Add
        } else if input.peek(Token![-]) && !input.peek(Token![->]) && !input.peek(Token![-=]) {
            input.parse::<Token![-]>()?;
            BinOp::Sub
        } else {
            break;
        };
        let rhs = parse_product(input)?;
        let span = join(lhs.span(), rhs.span());
        lhs = Expr::Binary(op, Box::new(lhs), Box::new(rhs), span);
    }
    Ok(lhs)
}

fn parse_product(input: ParseStream) -> syn::Result<Expr> {
    let mut lhs = parse_unary(input)?;
    loop {
        let op = if input.peek(Token![*]) && !input.peek(Token![*=]) {
            input.parse::<Token![*]>()?;
            BinOp::Mul
        } else if input.peek(Token![/]) && !input.peek(Token![/=]) {
            input.parse::<Token![/]>()?;
            BinOp::Div
        } else if input.peek(Token![^]) {
            let t = input.parse::<Token![^]>()?;
            return Err(syn::Error::new(t.span, "`^` is not a power operator here; write `pow(base, exponent)`"));
        } else if input.peek(Token![%]) {
            let t = input.parse::<Token![%]>()?;
            return Err(syn::Error::new(t.span, "`%` is not supported in flow formulas (it is not differentiable)"));
        } else {
            break;
        };
        let rhs = parse_unary(input)?;
        let span = join(lhs.span(), rhs.span());
        lhs = Expr::Binary(op, Box::new(lhs), Box::new(rhs), span);
    }
    Ok(lhs)
}

fn parse_unary(input: ParseStream) -> syn::Result<Expr> {
    if input.peek(Token![-]) {
        let t = input.parse::<Token![-]>()?;
        let e = parse_unary(input)?;
        let span = join(t.span, e.span());
        return Ok(Expr::Neg(Box::new(e), span));
    }
    if input.peek(Token![+]) {
        input.parse::<Token![+]>()?;
        return parse_unary(input);
    }
    parse_atom(input)
}

fn parse_atom(input: ParseStream) -> syn::Result<Expr> {
    if input.peek(token::Paren) {
        let inner;
        syn::parenthesized!(inner in input);
        let e = parse_expr(&inner)?;
        if !inner.is_empty() {
            return Err(inner.error("expected `)`"));
        }
        return Ok(e);
    }
    if input.peek(syn::LitFloat) {
        let l: syn::LitFloat = input.parse()?;
        check_suffix(l.suffix(), l.span())?;
        return Ok(Expr::Num(l.base10_parse::<f64>()?, l.span()));
    }
    if input.peek(syn::LitInt) {
        let l: syn::LitInt = input.parse()?;
        check_suffix(l.suffix(), l.span())?;
        let v: f64 = l.base10_digits().parse().map_err(|_| syn::Error::new(l.span(), "not a number"))?;
        return Ok(Expr::Num(v, l.span()));
    }
    if input.peek(syn::Ident) {
        let name = ident(input)?;
        if input.peek(token::Paren) {
            let inner;
            let p = syn::parenthesized!(inner in input);
            let mut args = Vec::new();
            while !inner.is_empty() {
                args.push(parse_expr(&inner)?);
                if inner.is_empty() {
                    break;
                }
                inner.parse::<Token![,]>()?;
            }
            let span = join(name.span, p.span.close());
            return Ok(Expr::Call(name, args, span));
        }
        return Ok(Expr::Var(name));
    }
    if input.is_empty() {
        return Err(input.error("expected an expression"));
    }
    Err(input.error("expected a number, a name, a call like `exp(x)`, or `(`"))
}

fn check_suffix(suffix: &str, span: Span) -> syn::Result<()> {
    match suffix {
        "" | "f64" | "f32" | "i32" | "i64" | "u32" | "u64" | "usize" | "isize" => Ok(()),
        s => Err(syn::Error::new(span, format!("unknown numeric suffix `{s}`; write the number without it"))),
    }
}
