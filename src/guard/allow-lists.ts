/**
 * Default allow-lists of the SQL verifier. A function call can run arbitrary SQL (query_to_xml), read files,
 * change settings (set_config) or be a SECURITY DEFINER that bypasses every check, so only functions known to be
 * pure builtins (or at least unable to read tables) are allowed by default. Extend with `allowFunctions`.
 */
export const DEFAULT_SAFE_FUNCTIONS: readonly string[] = [
  // aggregates
  'count', 'sum', 'avg', 'min', 'max', 'bool_and', 'bool_or', 'every', 'array_agg', 'string_agg', 'json_agg',
  'jsonb_agg', 'json_object_agg', 'jsonb_object_agg', 'stddev', 'stddev_pop', 'stddev_samp', 'variance',
  'var_pop', 'var_samp', 'percentile_cont', 'percentile_disc', 'mode', 'bit_and', 'bit_or',
  // window functions
  'row_number', 'rank', 'dense_rank', 'percent_rank', 'cume_dist', 'ntile', 'lag', 'lead', 'first_value',
  'last_value', 'nth_value',
  // time
  'now', 'clock_timestamp', 'statement_timestamp', 'transaction_timestamp', 'date_trunc', 'date_part', 'extract',
  'age', 'make_date', 'make_time', 'make_timestamp', 'make_timestamptz', 'make_interval', 'to_timestamp', 'to_date',
  'to_char', 'to_number', 'date_bin', 'isfinite', 'timezone', 'justify_days', 'justify_hours', 'justify_interval',
  // strings
  'lower', 'upper', 'initcap', 'length', 'char_length', 'character_length', 'octet_length', 'bit_length', 'btrim',
  'ltrim', 'rtrim', 'trim', 'substring', 'substr', 'position', 'strpos', 'replace', 'concat', 'concat_ws', 'left',
  'right', 'lpad', 'rpad', 'split_part', 'starts_with', 'reverse', 'repeat', 'format', 'md5', 'encode', 'decode',
  'regexp_replace', 'regexp_match', 'regexp_like', 'regexp_count', 'regexp_substr', 'string_to_array',
  'array_to_string', 'translate', 'quote_literal', 'quote_ident', 'quote_nullable', 'overlay', 'like_escape',
  'similar_to_escape', 'normalize', 'unistr', 'ascii', 'chr', 'to_hex',
  // numbers
  'abs', 'ceil', 'ceiling', 'floor', 'round', 'trunc', 'mod', 'power', 'sqrt', 'cbrt', 'sign', 'exp', 'ln', 'log',
  'log10', 'pi', 'width_bucket', 'div', 'gcd', 'lcm', 'scale', 'random',
  // json
  'to_json', 'to_jsonb', 'json_build_object', 'jsonb_build_object', 'json_build_array', 'jsonb_build_array',
  'jsonb_set', 'jsonb_insert', 'jsonb_extract_path', 'jsonb_extract_path_text', 'json_extract_path',
  'json_extract_path_text', 'jsonb_array_length', 'json_array_length', 'jsonb_typeof', 'json_typeof',
  'jsonb_strip_nulls', 'jsonb_pretty', 'jsonb_array_elements', 'jsonb_array_elements_text', 'jsonb_each',
  'jsonb_each_text', 'jsonb_object_keys', 'json_array_elements', 'jsonb_path_exists', 'jsonb_path_query_first',
  // arrays and sets
  'array_length', 'cardinality', 'array_position', 'array_positions', 'array_append', 'array_prepend', 'array_cat',
  'array_remove', 'array_replace', 'unnest', 'generate_series', 'array_lower', 'array_upper', 'array_ndims',
  // misc
  'gen_random_uuid', 'greatest', 'least', 'num_nulls', 'num_nonnulls', 'merge_action',
];

/**
 * Operators with a fixed builtin meaning. Unqualified operators resolve through search_path like functions, so the
 * list is closed too; `OPERATOR(schema.op)` is refused unless the schema is pg_catalog.
 */
export const DEFAULT_SAFE_OPERATORS: readonly string[] = [
  '=', '<>', '<', '>', '<=', '>=', '+', '-', '*', '/', '%', '^', '||', '|/', '||/', '@', '&', '|', '#', '~', '<<', '>>',
  '~~', '!~~', '~~*', '!~~*', '!~', '~*', '!~*', '@>', '<@', '&&', '->', '->>', '#>', '#>>', '?', '?|', '?&', '#-',
  '@?', '@@',
];
