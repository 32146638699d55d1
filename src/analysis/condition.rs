//! successCondition / failureCondition: CEL expressions over `result`, with the helpers Argo Rollouts
//! users reach for (`len`, `isNaN`, `isInf`, `default`, `asInt`, `asFloat`).
//!
//! How `result` looks (docs/analysis-verdicts.md, "What `result` holds"): a PromQL scalar is a number (`result >= 0.95`),
//! an instant vector a list of numbers in series order (`result[0] >= 0.95`), an empty vector `[]`. A web
//! metric's JSON boolean or string is a CEL bool or string. CEL is Argo's expr language's sibling, so
//! most Argo conditions work unchanged; expr-only syntax (`all(result, {# > 1})`) is written the CEL way
//! (`result.all(x, x > 1)`).
//!
//! Errors: a condition that does not parse fails [`compile`] with the expression in the message; one
//! that fails at evaluation (index out of range, comparing a list with a number, a non-boolean result)
//! makes [`Condition::evaluate`] return `Err`, which the rules turn into an Error measurement.
//!
//! Cost: conditions are hostile input and the `cel` crate has no cost limit, so a short expression of
//! nested `all`/`exists`/`map` over lists can run for hours. [`compile`] refuses expressions longer
//! than [`MAX_CONDITION_BYTES`] (the parser caps nesting at 96), and every comprehension checks
//! [`EVALUATION_BUDGET`] each time it starts a loop, so a runaway evaluation stops itself with an error.
//! The controller also runs conditions off the async runtime under a timeout
//! (`analysis::reconcile::judge_within_budget`).
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cel::common::ast::{CallExpr, EntryExpr, Expr, LiteralValue};
use cel::extractors::Arguments;
use cel::parser::{Expression, Macro};
use cel::{Context, Env, ExecutionError, FunctionContext, ResolveResult, Value};

use super::ResultValue;

/// The function `default(x, y)` is rewritten to at parse time; its first argument is the index of `x`
/// in the condition's table of `default` operands. Reserved: [`compile`] rejects expressions naming it.
const DEFAULT_FUNCTION: &str = "__sluice_default";

/// Wrapped around every comprehension's range at compile time: returns the range unchanged, or fails
/// once the evaluation is past its budget. Reserved like [`DEFAULT_FUNCTION`].
const BUDGET_FUNCTION: &str = "__sluice_budget";

/// Conditions longer than this are refused at validation: Argo-style conditions are one line, and the
/// length bounds the work one loop iteration can do.
pub const MAX_CONDITION_BYTES: usize = 2048;

/// How long one evaluation may run. Checked when a comprehension starts a loop (not per element, which
/// would defeat the `cel` crate's fast paths for `map`/`filter`/`all`/`exists`): nested loops, the way
/// a short expression gets slow, stop within about one inner loop of the budget.
pub const EVALUATION_BUDGET: Duration = Duration::from_secs(1);

/// A compiled condition, ready to be evaluated against any number of results.
pub struct Condition {
    expression: String,
    program: Expression,
    env: Arc<Env>,
    /// The `x` of every `default(x, y)`, evaluated lazily so an error in `x` can fall back to `y`.
    default_operands: Arc<Vec<Expression>>,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Condition").field(&self.expression).finish()
    }
}

/// Compiles a condition. The error names the expression and says what is wrong with it.
pub fn compile(expression: &str) -> Result<Condition, String> {
    if expression.len() > MAX_CONDITION_BYTES {
        let start = crate::bounds::truncate(expression, 64);
        return Err(format!(
            "condition {start:?} is {} bytes long; at most {MAX_CONDITION_BYTES} are allowed",
            expression.len()
        ));
    }
    for reserved in [DEFAULT_FUNCTION, BUDGET_FUNCTION] {
        if expression.contains(reserved) {
            return Err(format!("condition {expression:?}: {reserved} is reserved"));
        }
    }
    // CEL evaluates function arguments eagerly, so `default(result[0], 0)` would fail on `[]` before
    // `default` ran. A macro moves `x` out of the call into a table; the function evaluates it itself
    // and falls back to `y` when it errors.
    let operands: Arc<Mutex<Vec<Expression>>> = Arc::default();
    let table = operands.clone();
    let default_macro = Macro::global("default", 2, move |helper, _target, args| {
        let fallback = args.pop().expect("two arguments");
        let value = args.pop().expect("two arguments");
        let mut table = table.lock().expect("macro table");
        let index = helper.next_expr(Expr::Literal(LiteralValue::Int((table.len() as i64).into())));
        table.push(value);
        Ok(Some(helper.next_expr(Expr::Call(CallExpr {
            func_name: DEFAULT_FUNCTION.to_string(),
            target: None,
            args: vec![index, fallback],
        }))))
    });
    let mut env = Env::stdlib();
    env.add_macro(default_macro)
        .map_err(|e| format!("condition {expression:?}: {e}"))?;
    let mut program = env
        .parser()
        .parse(expression)
        .map_err(|e| format!("condition {expression:?} does not parse: {e}"))?;
    let mut default_operands = std::mem::take(&mut *operands.lock().expect("macro table"));
    meter_loops(&mut program);
    default_operands.iter_mut().for_each(meter_loops);
    Ok(Condition {
        expression: expression.to_string(),
        program,
        env: Arc::new(env),
        default_operands: Arc::new(default_operands),
    })
}

impl Condition {
    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// Evaluates the condition with `result` bound to `value`. `Err` when evaluation fails or the
    /// expression is not a boolean; the message names the expression and the value.
    pub fn evaluate(&self, value: &ResultValue) -> Result<bool, String> {
        let mut context = Context::with_env(self.env.clone());
        context.add_variable_from_value("result", to_cel(value));
        register_helpers(&mut context, self.default_operands.clone());
        let deadline = Instant::now() + EVALUATION_BUDGET;
        context
            .add_function(
                BUDGET_FUNCTION,
                move |ftx: &FunctionContext, range: Value| -> ResolveResult {
                    if Instant::now() > deadline {
                        return Err(ftx.error(format!(
                            "evaluation stopped: over its {EVALUATION_BUDGET:?} evaluation budget (too many nested loops?)"
                        )));
                    }
                    Ok(range)
                },
            )
            .expect("helper names are free");
        // Messages quote the value; a huge one is cut (the measurement stores it cut anyway).
        let shown = |text: String| crate::bounds::truncate(&text, 256).into_owned();
        match Value::resolve(&self.program, &context) {
            Ok(Value::Bool(verdict)) => Ok(verdict),
            Ok(other) => Err(format!(
                "condition {:?} evaluated to {}, not true or false (result = {})",
                self.expression,
                shown(format!("{other:?}")),
                shown(value.to_string())
            )),
            Err(error) => {
                let error = crate::bounds::truncate(&error.to_string(), 1024).into_owned();
                let hint = hint(value, &error);
                Err(format!(
                    "condition {:?} failed with result = {}: {error}{hint}",
                    self.expression,
                    shown(value.to_string())
                ))
            }
        }
    }
}

/// Wraps every comprehension's range in [`BUDGET_FUNCTION`], so each loop start checks the deadline.
/// The loop's own step and condition are left alone: the `cel` crate recognises their shape to run
/// `map`/`filter` by appending in place and `all`/`exists` with short-circuiting.
fn meter_loops(expression: &mut Expression) {
    match &mut expression.expr {
        Expr::Comprehension(comprehension) => {
            let c = &mut **comprehension;
            for part in [
                &mut c.iter_range,
                &mut c.accu_init,
                &mut c.loop_cond,
                &mut c.loop_step,
                &mut c.result,
            ] {
                meter_loops(part);
            }
            let range = std::mem::take(&mut c.iter_range);
            c.iter_range = Expression {
                id: range.id,
                expr: Expr::Call(CallExpr {
                    func_name: BUDGET_FUNCTION.to_string(),
                    target: None,
                    args: vec![range],
                }),
            };
        }
        Expr::Call(call) => {
            if let Some(target) = call.target.as_deref_mut() {
                meter_loops(target);
            }
            call.args.iter_mut().for_each(meter_loops);
        }
        Expr::List(list) => list.elements.iter_mut().for_each(meter_loops),
        Expr::Map(map) => map.entries.iter_mut().for_each(|entry| meter_entry(&mut entry.expr)),
        Expr::Struct(structure) => structure
            .entries
            .iter_mut()
            .for_each(|entry| meter_entry(&mut entry.expr)),
        Expr::Select(select) => meter_loops(&mut select.operand),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn meter_entry(entry: &mut EntryExpr) {
    match entry {
        EntryExpr::MapEntry(entry) => {
            meter_loops(&mut entry.key);
            meter_loops(&mut entry.value);
        }
        EntryExpr::StructField(field) => meter_loops(&mut field.value),
    }
}

/// The most common mistake is treating a list as a number or the reverse; when the error looks like
/// that, say what `result` is.
fn hint(value: &ResultValue, error: &str) -> &'static str {
    match value {
        ResultValue::Vector(values) if values.is_empty() && error.contains("out of bounds") => {
            " (result is an empty list: no series or values matched)"
        }
        ResultValue::Vector(_) if error.contains("list") => " (result is a list of numbers: index it, e.g. result[0])",
        ResultValue::Scalar(_) if error.contains("'_[_]'") => {
            " (result is a number: compare it directly, e.g. result >= 0.95)"
        }
        _ => "",
    }
}

fn to_cel(value: &ResultValue) -> Value {
    match value {
        ResultValue::Scalar(number) => Value::Float(*number),
        ResultValue::Vector(numbers) => Value::List(Arc::new(numbers.iter().map(|n| Value::Float(*n)).collect())),
        ResultValue::Bool(flag) => Value::Bool(*flag),
        ResultValue::Text(text) => Value::String(Arc::new(text.clone())),
    }
}

fn register_helpers(context: &mut Context, default_operands: Arc<Vec<Expression>>) {
    // The names are not in CEL's standard library, so registering them cannot fail.
    type Helper = fn(Arguments) -> ResolveResult;
    let helpers: [(&str, Helper); 5] = [
        ("len", len),
        ("isNaN", is_nan),
        ("isInf", is_inf),
        ("asInt", as_int),
        ("asFloat", as_float),
    ];
    for (name, function) in helpers {
        context.add_function(name, function).expect("helper names are free");
    }
    context
        .add_function(
            DEFAULT_FUNCTION,
            move |ftx: &FunctionContext, index: i64, fallback: Value| -> ResolveResult {
                let operand = usize::try_from(index)
                    .ok()
                    .and_then(|i| default_operands.get(i))
                    .ok_or_else(|| ftx.error("unknown default() operand"))?;
                Ok(match Value::resolve(operand, ftx.ptx) {
                    Ok(Value::Null) | Err(_) => fallback,
                    Ok(Value::Float(number)) if number.is_nan() => fallback,
                    Ok(value) => value,
                })
            },
        )
        .expect("helper names are free");
}

fn one_argument(name: &str, Arguments(args): &Arguments) -> Result<Value, ExecutionError> {
    match args.as_slice() {
        [value] => Ok(value.clone()),
        _ => Err(ExecutionError::function_error(
            name,
            format!("takes one argument, got {}", args.len()),
        )),
    }
}

fn type_error(name: &str, value: &Value) -> ExecutionError {
    ExecutionError::function_error(name, format!("does not take {value:?}"))
}

/// `len(x)`: the number of elements of a list or map, or characters of a string (Argo's `len`).
fn len(args: Arguments) -> ResolveResult {
    let size = match one_argument("len", &args)? {
        Value::List(items) => items.len(),
        Value::Map(map) => map.map.len(),
        Value::String(text) => text.chars().count(),
        other => return Err(type_error("len", &other)),
    };
    Ok(Value::Int(size as i64))
}

/// `isNaN(x)`: whether a number is NaN (integers never are).
fn is_nan(args: Arguments) -> ResolveResult {
    match one_argument("isNaN", &args)? {
        Value::Float(number) => Ok(Value::Bool(number.is_nan())),
        Value::Int(_) | Value::UInt(_) => Ok(Value::Bool(false)),
        other => Err(type_error("isNaN", &other)),
    }
}

/// `isInf(x)`: whether a number is +Inf or −Inf.
fn is_inf(args: Arguments) -> ResolveResult {
    match one_argument("isInf", &args)? {
        Value::Float(number) => Ok(Value::Bool(number.is_infinite())),
        Value::Int(_) | Value::UInt(_) => Ok(Value::Bool(false)),
        other => Err(type_error("isInf", &other)),
    }
}

/// `asInt(x)`: a whole number from a numeric string or a number (fractions truncate, as CEL's `int`).
fn as_int(args: Arguments) -> ResolveResult {
    let value = one_argument("asInt", &args)?;
    let number = match &value {
        Value::Int(n) => return Ok(Value::Int(*n)),
        Value::UInt(n) => *n as f64,
        Value::Float(n) => *n,
        Value::String(text) => match text.trim().parse::<i64>() {
            Ok(n) => return Ok(Value::Int(n)),
            Err(_) => text
                .trim()
                .parse::<f64>()
                .map_err(|_| ExecutionError::function_error("asInt", format!("{text:?} is not a number")))?,
        },
        other => return Err(type_error("asInt", other)),
    };
    if !number.is_finite() || number.abs() >= i64::MAX as f64 {
        return Err(ExecutionError::function_error(
            "asInt",
            format!("{number} has no integer value"),
        ));
    }
    Ok(Value::Int(number.trunc() as i64))
}

/// `asFloat(x)`: a floating-point number from a numeric string or a number.
fn as_float(args: Arguments) -> ResolveResult {
    match one_argument("asFloat", &args)? {
        Value::Float(n) => Ok(Value::Float(n)),
        Value::Int(n) => Ok(Value::Float(n as f64)),
        Value::UInt(n) => Ok(Value::Float(n as f64)),
        Value::String(text) => text
            .trim()
            .parse::<f64>()
            .map(Value::Float)
            .map_err(|_| ExecutionError::function_error("asFloat", format!("{text:?} is not a number"))),
        other => Err(type_error("asFloat", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ResultValue::*;

    fn eval(expression: &str, value: ResultValue) -> Result<bool, String> {
        compile(expression).unwrap().evaluate(&value)
    }

    #[test]
    fn argo_style_conditions() {
        let cases: &[(&str, ResultValue, bool)] = &[
            ("result[0] >= 0.95", Vector(vec![0.97]), true),
            ("result[0] >= 0.95", Vector(vec![0.90]), false),
            ("result >= 0.95", Scalar(0.99), true),
            ("result < 0.05", Scalar(0.01), true),
            ("len(result) > 0 && result[0] < 0.05", Vector(vec![0.01]), true),
            ("len(result) > 0 && result[0] < 0.05", Vector(vec![]), false),
            ("len(result) == 0", Vector(vec![]), true),
            ("result[0] >= 1", Vector(vec![1.0]), true),
            ("result == 1", Scalar(1.0), true),
            ("isNaN(result[0])", Vector(vec![f64::NAN]), true),
            ("isNaN(result)", Scalar(0.5), false),
            ("isInf(result[0])", Vector(vec![f64::INFINITY]), true),
            ("isInf(result)", Scalar(f64::NEG_INFINITY), true),
            ("result[0] > 100", Vector(vec![f64::INFINITY]), true),
            ("default(result[0], 0) < 0.05", Vector(vec![]), true),
            ("default(result[0], 1) < 0.05", Vector(vec![]), false),
            ("default(result[0], 1) < 0.05", Vector(vec![0.01]), true),
            ("default(result, 0.0) == 0.0", Scalar(f64::NAN), true),
            (
                "default(default(result[1], result[0]), 9) == 3.0",
                Vector(vec![3.0]),
                true,
            ),
            (
                "default(default(result[1], result[2]), 9) == 9",
                Vector(vec![3.0]),
                true,
            ),
            ("asInt(\"42\") == 42", Vector(vec![]), true),
            ("asInt(result) == 2", Scalar(2.7), true),
            ("asFloat(\"0.5\") == 0.5", Vector(vec![]), true),
            ("asFloat(result) > 0.4", Text("0.5".into()), true),
            ("result == true", Bool(true), true),
            ("result == \"ok\"", Text("ok".into()), true),
            ("result.all(x, x > 0.9)", Vector(vec![0.95, 0.99]), true),
            ("result.exists(x, x > 0.99)", Vector(vec![0.95, 0.99]), false),
            ("size(result) == 2", Vector(vec![0.95, 0.99]), true),
        ];
        for (expression, value, expected) in cases {
            assert_eq!(
                eval(expression, value.clone()),
                Ok(*expected),
                "{expression} with result = {value}"
            );
        }
    }

    #[test]
    fn evaluation_errors_name_the_expression_and_the_value() {
        let error = eval("result[0] >= 0.95", Vector(vec![])).unwrap_err();
        assert!(error.contains("result[0] >= 0.95") && error.contains("[]"), "{error}");
        assert!(error.contains("empty list"), "{error}");
        let error = eval("result >= 0.95", Vector(vec![0.99])).unwrap_err();
        assert!(error.contains("index it, e.g. result[0]"), "{error}");
        let error = eval("result[0] >= 0.95", Scalar(0.99)).unwrap_err();
        assert!(error.contains("compare it directly"), "{error}");
        let error = eval("result[0] + 1.0", Vector(vec![0.99])).unwrap_err();
        assert!(error.contains("not true or false"), "{error}");
        let error = eval("result[0] / \"x\" > 1.0", Vector(vec![0.99])).unwrap_err();
        assert!(!error.contains("index it"), "{error}");
        assert!(eval("asInt(\"x\") == 1", Vector(vec![])).is_err());
        assert!(eval("unknown(result)", Vector(vec![])).is_err());
        assert!(eval("missing > 1", Vector(vec![])).is_err());
    }

    #[test]
    fn compile_errors_name_the_expression() {
        let error = compile("result[0] >=").unwrap_err();
        assert!(error.contains("\"result[0] >=\""), "{error}");
        assert!(compile("__sluice_default(0, 1)").is_err());
        assert_eq!(compile("result > 1").unwrap().expression(), "result > 1");
    }

    #[test]
    fn long_conditions_and_reserved_names_are_refused() {
        let long = format!("result > 0.0{}", " && result > 0.0".repeat(200));
        let error = compile(&long).unwrap_err();
        assert!(error.contains(&format!("is {} bytes long", long.len())), "{error}");
        assert!(error.len() < 300, "the message quotes only the start: {error}");
        assert!(compile("__sluice_budget([1]).size() == 1").is_err());
    }

    /// Nested `exists` over ten-element lists, `depth` deep, whose innermost test is never true.
    fn nested_loops(depth: usize) -> String {
        let mut condition = "result < 0.0".to_string();
        for level in 0..depth {
            condition = format!("[0, 1, 2, 3, 4, 5, 6, 7, 8, 9].exists(x{level}, {condition})");
        }
        condition
    }

    #[test]
    fn a_runaway_condition_stops_itself_at_its_budget() {
        // 10^8 innermost tests: minutes without the budget.
        let condition = compile(&nested_loops(8)).unwrap();
        let started = std::time::Instant::now();
        let error = condition.evaluate(&Scalar(1.0)).unwrap_err();
        let took = started.elapsed();
        assert!(error.contains("over its 1s evaluation budget"), "{error}");
        assert!(took < EVALUATION_BUDGET * 2, "took {took:?}");
        // The same shape, small enough, still evaluates: the budget wrapper changes no result.
        assert_eq!(compile(&nested_loops(3)).unwrap().evaluate(&Scalar(1.0)), Ok(false));
        assert_eq!(
            eval(
                "[[1.0], [2.0]].map(l, l.filter(x, x > 1.0)).exists(l, size(l) == 1)",
                Scalar(0.0)
            ),
            Ok(true)
        );
        assert_eq!(
            eval("default({'a': [1].all(x, x > 0)}['a'], false)", Scalar(0.0)),
            Ok(true)
        );
    }

    #[test]
    fn messages_quote_a_huge_value_cut() {
        let huge = Text("w".repeat(1 << 20));
        let error = eval("result > 1.0", huge.clone()).unwrap_err();
        assert!(error.len() < 2048, "{}", error.len());
        assert!(error.contains("[truncated, 1048578 bytes]"), "{error}");
        let error = eval("result + \"\"", huge).unwrap_err();
        assert!(
            error.len() < 2048 && error.contains("not true or false"),
            "{}",
            error.len()
        );
    }

    #[test]
    fn a_condition_evaluates_many_times() {
        let condition = compile("default(result[0], 0) > 0.5").unwrap();
        assert_eq!(condition.evaluate(&Vector(vec![0.9])), Ok(true));
        assert_eq!(condition.evaluate(&Vector(vec![])), Ok(false));
        assert_eq!(condition.evaluate(&Vector(vec![0.7])), Ok(true));
    }
}
