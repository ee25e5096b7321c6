"""The unknown-name message: every valid name, and a did-you-mean when one is close."""
from mutual_prompt.names import close_matches, unknown_name


def test_a_misspelt_name_gets_the_closest_valid_one():
    message = unknown_name("trainer", "MutualPromt", ["ZeroshotMP", "MutualPrompt"])
    assert message == ("unknown trainer 'MutualPromt' (did you mean 'MutualPrompt'?); "
                       "valid trainers: MutualPrompt, ZeroshotMP")


def test_a_name_like_none_lists_the_valid_ones_without_a_guess():
    assert unknown_name("dataset", "xyz", ["OxfordPets", "Caltech101"]) == (
        "unknown dataset 'xyz'; valid datasets: Caltech101, OxfordPets")


def test_case_is_ignored_when_guessing_and_the_valid_spelling_is_given():
    assert close_matches("caltech101", ["Caltech101", "OxfordPets"]) == ["Caltech101"]
    assert close_matches("EUROSAT", ["eurosat", "dtd"]) == ["eurosat"]


def test_no_valid_names_says_so():
    assert unknown_name("protocol", "x", []) == "unknown protocol 'x'; valid protocols: (none)"
