#!/usr/bin/env python3
"""Writes a short-text spam/ham data set shaped like the SMS Spam Collection
(the tutorial's spam/ham variant): train.csv, valid.csv and test.csv with
columns label,titletext, labels `ham` and `spam`, texts of about 10-30
WordPiece tokens built from templates with random fillers, about 13% spam.

It is for throughput side by side (texts far shorter than 128 tokens); the
classes are not hard to tell apart.

  python benches/python/make_sms_like.py OUT_DIR [--train 500] [--valid 125] [--test 500] [--seed 7]
"""
import argparse
import csv
import os
import random

NAMES = ["Anna", "Ben", "Chloe", "Dan", "Ella", "Finn", "Grace", "Harry", "Isla", "Jack", "Kate", "Leo", "Mia", "Noah"]
PLACES = ["the station", "work", "the pub", "mum's", "the gym", "uni", "the shop", "town", "the cinema", "home"]
TIMES = ["tonight", "tomorrow", "later", "at 7", "after lunch", "this weekend", "on friday", "in 10 mins", "at half 6"]
THINGS = ["milk", "the keys", "my charger", "bread", "the tickets", "some pizza", "your notes", "the car"]
FEELINGS = ["tired", "so bored", "starving", "knackered", "fine", "running late", "nearly there", "stuck in traffic"]
HAM = [
    "Hey {name}, are we still on for {time}?",
    "Ok see you at {place} {time}",
    "Can you pick up {thing} on your way back? Thanks x",
    "Sorry I'm {feeling}, will call you {time}",
    "{name} says hi. Are you coming to {place}?",
    "lol that was brilliant, cant stop laughing",
    "I'll be at {place} {time}, text me when you're there",
    "Did you get {thing}? I left it at {place}",
    "Yeah fine, just {feeling}. Speak {time}",
    "Happy birthday {name}!! Have a lovely day x",
    "Where are you? We're waiting at {place}",
    "Don't forget {thing} {time} please",
    "Just got home, {feeling}. Night x",
    "Can't make it {time}, something came up. Sorry {name}",
]
PRIZES = ["a £1000 cash prize", "a brand new phone", "a holiday for 2", "£500 in vouchers", "a FREE camera", "2 tickets to the final"]
SPAM = [
    "WINNER!! You have been selected to receive {prize}. Call {phone} now to claim. T&Cs apply",
    "FREE entry into our weekly draw! Text WIN to {short} to claim {prize}. 18+ only",
    "URGENT! Your mobile number has won {prize}. Claim code {code}. Call {phone} before {date}",
    "Congratulations! You are awarded {prize}. Reply YES to {short} or visit {url}",
    "You have 1 new voicemail. Please call {phone} now. Calls cost 150p/min",
    "Your account will be suspended. Verify your details at {url} within 24 hours",
    "Txt STOP to {short} to stop receiving these msgs. Get {prize} when you upgrade today!",
    "Hot singles in your area are waiting! Text CHAT to {short} now, only 25p/msg",
]


def fill(template, rng):
    return template.format(
        name=rng.choice(NAMES),
        place=rng.choice(PLACES),
        time=rng.choice(TIMES),
        thing=rng.choice(THINGS),
        feeling=rng.choice(FEELINGS),
        prize=rng.choice(PRIZES),
        phone="0" + "".join(rng.choice("0123456789") for _ in range(10)),
        short=str(rng.randint(80000, 89999)),
        code="".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(6)),
        date=f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}",
        url=f"www.{rng.choice(['win', 'prize', 'claim', 'secure'])}-{rng.randint(10, 99)}.co.uk",
    )


def rows(n, rng):
    out = []
    for _ in range(n):
        spam = rng.random() < 0.13
        out.append(("spam" if spam else "ham", fill(rng.choice(SPAM if spam else HAM), rng)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=500)
    ap.add_argument("--valid", type=int, default=125)
    ap.add_argument("--test", type=int, default=500)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)
    for name, n in [("train", a.train), ("valid", a.valid), ("test", a.test)]:
        if n <= 0:
            continue
        with open(os.path.join(a.out, f"{name}.csv"), "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["label", "titletext"])
            w.writerows(rows(n, rng))


if __name__ == "__main__":
    main()
