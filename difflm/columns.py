"""Which column of a table record's text a token belongs to. A record is JSON written in the schema's column order, so
that follows from the text before the token: the number of top-level separators outside strings. Sampling reads it
to give each column its own temperature (difflm.column_temperature), training to weigh the target column's tokens
(decoder.target_loss_weight)."""


class JsonPosition:
    """Where a JSON text stands, read character by character: inside a string or not, nesting depth, and how many
    separators the outermost container has passed (the column index of a table record)."""

    def __init__(self):
        self.depth, self.in_string, self.escaped, self.column = 0, False, False, 0

    def read(self, text):
        for char in text:
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif char == "\\":
                    self.escaped = True
                elif char == '"':
                    self.in_string = False
            elif char == '"':
                self.in_string = True
            elif char in "[{":
                self.depth += 1
            elif char in "]}":
                self.depth -= 1
            elif char == "," and self.depth == 1:
                self.column += 1


class TokenTexts:
    """Token ids -> their text, each token decoded once: structure characters are ASCII, so one token decodes alone
    (a character split between tokens decodes to a replacement character, which is never structure)."""

    def __init__(self, tokenizer):
        self.tokenizer, self._texts = tokenizer, {}

    def __call__(self, tokens):
        for token in tokens:
            if token not in self._texts:
                self._texts[token] = self.tokenizer.decode([token], skip_special_tokens=True)
        return "".join(self._texts[token] for token in tokens)


def token_columns(texts, token_ids):
    """The column each token of a record's tokens starts in (`texts`: a TokenTexts): a separator's token belongs to
    the column it ends, the end of the record to the last column."""
    position, columns = JsonPosition(), []
    for token in token_ids:
        columns.append(position.column)
        position.read(texts([token]))
    return columns


class ColumnWeights:
    """RecordCollator's `weigh`: records' token ids (after the start token) -> a loss weight per token, `weight` for
    the tokens of column `column` (its index in schema order), 1 for the others."""

    def __init__(self, tokenizer, column, weight):
        self.texts, self.column, self.weight = TokenTexts(tokenizer), column, float(weight)

    def __call__(self, sequences):
        return [[self.weight if column == self.column else 1.0 for column in token_columns(self.texts, token_ids)]
                for token_ids in sequences]
