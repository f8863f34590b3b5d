"""Small helpers shared by the bench/ scripts."""


def comma_choices(parser, text, known, what):
    """The comma-separated items of ``text``; a parser error names any item
    not in ``known``."""
    items = [x for x in text.split(",") if x]
    bad = [x for x in items if x not in known]
    if bad:
        parser.error("unknown %s: %s (known: %s)"
                     % (what, ", ".join(bad), ", ".join(known)))
    return items
