#!/usr/bin/env bash
# The cost of reading through a layout (SPEC §13), on one generated file in one run:
#
#   benches/layouts.sh [PAIRS]                        # default 1000000
#   BASE=path/to/older/crm-import benches/layouts.sh  # also the native format on an older binary
#
# The generated export is rewritten with Russian tags, as a 1C export writes them (sed, one
# line at a time), and read through a layout of those tags. Prints seconds and peak RSS of
# `check` and a fresh import of each, interleaved three times, and whether the two imports
# export the same bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-1000000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet
head=${CARGO_TARGET_DIR:-target}/release/crm-import
"$head" generate --premises "$pairs" --clients "$pairs" --seed 1 --out "$work/native.xml"
sed -e 's|<crm-import version="1">|<Выгрузка>|; s|</crm-import>|</Выгрузка>|' \
  -e 's|<premises>|<Помещения>|; s|</premises>|</Помещения>|' \
  -e 's|<premise id="\([^"]*\)">|<Помещение Код="\1">|; s|</premise>|</Помещение>|' \
  -e 's|<address>\(.*\)</address>|<Адрес>\1</Адрес>|; s|<number>\(.*\)</number>|<Номер>\1</Номер>|' \
  -e 's|<kind>flat</kind>|<Вид>Квартира</Вид>|; s|<kind>non_residential</kind>|<Вид>Нежилое помещение</Вид>|' \
  -e 's|<kind>parking</kind>|<Вид>Машиноместо</Вид>|; s|<kind>storage</kind>|<Вид>Кладовая</Вид>|' \
  -e 's|<floor>\(.*\)</floor>|<Этаж>\1</Этаж>|; s|<entrance>\(.*\)</entrance>|<Подъезд>\1</Подъезд>|' \
  -e 's|<area>\(.*\)</area>|<Площадь>\1</Площадь>|; s|<rooms>\(.*\)</rooms>|<КоличествоКомнат>\1</КоличествоКомнат>|' \
  -e 's|<cadastral-number>\(.*\)</cadastral-number>|<КадастровыйНомер>\1</КадастровыйНомер>|' \
  -e 's|<accounts>|<ЛицевыеСчета>|; s|</accounts>|</ЛицевыеСчета>|' \
  -e 's|<account id="\([^"]*\)">|<ЛицевойСчет Код="\1">|; s|</account>|</ЛицевойСчет>|' \
  -e 's|<residents>\(.*\)</residents>|<Проживает>\1</Проживает>|' \
  -e 's|<clients>|<Физлица>|; s|</clients>|</Физлица>|' \
  -e 's|<client id="\([^"]*\)">|<Физлицо Код="\1">|; s|</client>|</Физлицо>|' \
  -e 's|<name>\(.*\)</name>|<ФИО>\1</ФИО>|' \
  -e 's|<phone>\(.*\)</phone>|<Контакты><Телефон>\1</Телефон></Контакты>|' \
  -e 's|<email>\(.*\)</email>|<Контакты><Email>\1</Email></Контакты>|' \
  -e 's|<premise ref="\([^"]*\)" role="owner"/>|<Помещение Код="\1" Роль="Собственник"/>|' \
  -e 's|<premise ref="\([^"]*\)" role="tenant"/>|<Помещение Код="\1" Роль="Наниматель"/>|' \
  -e 's|<premise ref="\([^"]*\)" role="resident"/>|<Помещение Код="\1" Роль="Проживающий"/>|' \
  -e 's|<premise ref="\([^"]*\)"/>|<Помещение Код="\1"/>|; s|<account ref="\([^"]*\)"/>|<Счет Код="\1"/>|' \
  "$work/native.xml" > "$work/ru.xml"
cat > "$work/ru.toml" <<'TOML'
format = "xml"

[premise]
record = "/Выгрузка/Помещения/Помещение"
id = "@Код"
address = "Адрес"
number = "Номер"
kind = { from = "Вид", map = { "Квартира" = "flat", "Нежилое помещение" = "non_residential", "Машиноместо" = "parking", "Кладовая" = "storage" } }
floor = "Этаж"
entrance = "Подъезд"
area = "Площадь"
rooms = "КоличествоКомнат"
cadastral_number = "КадастровыйНомер"

[account]
record = "ЛицевыеСчета/ЛицевойСчет"
id = "@Код"
number = "Номер"
area = "Площадь"
residents = "Проживает"

[client]
record = "/Выгрузка/Физлица/Физлицо"
id = "@Код"
name = "ФИО"
phone = "Контакты/Телефон"
email = "Контакты/Email"
premises = { each = "Помещение", ref = "@Код", role = { from = "@Роль", map = { "Собственник" = "owner", "Наниматель" = "tenant", "Проживающий" = "resident" } } }
accounts = { each = "Счет", ref = "@Код" }
TOML
echo "files: native $(du -h "$work/native.xml" | cut -f1), Russian tags $(du -h "$work/ru.xml" | cut -f1); $pairs pairs"

t() { # label, then the command
  local label=$1
  shift
  /usr/bin/time -f "%e s  %M KB peak" "$@" > "$work/out" 2> "$work/err" || true
  printf '%-34s %s\n' "$label" "$(tail -1 "$work/err")"
}
runs=("head native" "head layout")
[ -n "${BASE:-}" ] && runs=("base native" "head native" "head layout")
for what in check import; do
  for r in 1 2 3; do
    for name in "${runs[@]}"; do
      bin=$head
      args=("$work/native.xml")
      case $name in base*) bin=$BASE ;; esac
      case $name in *layout) args=("$work/ru.xml" --layout "$work/ru.toml") ;; esac
      if [ "$what" = import ]; then
        db="$work/${name// /-}.db"
        rm -f "$db"*
        args+=(--org uo-1 --source 1c --db "sqlite:$db")
      fi
      t "$name $what ($r)" "$bin" "$what" "${args[@]}"
    done
  done
done
if [ "$("$head" export --org uo-1 --db "sqlite:$work/head-native.db" | md5sum)" = \
  "$("$head" export --org uo-1 --db "sqlite:$work/head-layout.db" | md5sum)" ]; then
  echo "exports: native and Russian-tag layout identical"
else
  echo "exports: native and Russian-tag layout DIFFER"
fi
